"""Benchmark: CDSE download throughput against the local stand-in, and what verifying costs.

Run: ``python -m benchmarks.cdse_download [--mb 48] [--parallel 4]``.

Products are demo SAFEs with an incompressible ``AUX_DATA/bench_padding.bin`` member added so
each zip weighs ``--mb`` megabytes (a real L1C is 500-800 MB; the demo's bands compress to a
few hundred kB). The stand-in serves from memory over loopback, so the figures are the
client's own ceiling (Python HTTP, disk writes, fsync, hashing), not CDSE's network: CDSE
caps each connection at 20 MB/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from s2_assets.demo.products import build_safe, zip_safe
from s2_assets.providers.base import ProductRecord
from s2_assets.providers.cdse import CdseProvider, CdseSettings, Credentials
from s2_assets.providers.cdse_download import blake3_available, file_digest
from s2_assets_tests.cdse_standin import CdseStandin, StandinProduct


def padded_products(base: Path, count: int, megabytes: int) -> list[Path]:
    """``count`` demo L1C zips of about ``megabytes`` MB each."""
    zips = []
    for index in range(count):
        sensing = datetime(2024, 1, 1, 6, 35, 11, tzinfo=UTC) + timedelta(days=5 * index)
        safe = build_safe(base / "safe", level="L1C", sensing=sensing, size=60, seed=index)
        path = zip_safe(safe, base / "zip" / f"{safe.stem}.zip")
        with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(f"{safe.name}/AUX_DATA/bench_padding.bin", os.urandom(megabytes << 20))
        zips.append(path)
    return zips


def timed_fetch(provider: CdseProvider, records: list[ProductRecord], workdir: Path) -> float:
    """Seconds to fetch every record, one thread per record."""
    shutil.rmtree(workdir, ignore_errors=True)
    threads = [threading.Thread(target=provider.fetch, args=(r, workdir)) for r in records]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    assert len(list(workdir.glob("*.zip"))) == len(records), "a fetch failed"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=48, help="size of each product zip in MB")
    parser.add_argument("--parallel", type=int, default=4, help="products fetched at once")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        zips = padded_products(base, args.parallel, args.mb)
        standin = CdseStandin()
        for path in zips:
            standin.add(StandinProduct.from_zip(path))
        standin.start()
        try:
            settings = CdseSettings(
                catalogue_url=standin.catalogue_url,
                download_url=standin.download_url,
                token_url=standin.token_url,
                trusted_hosts=("localhost",),
            )
            provider = CdseProvider(settings, Credentials(standin.username, standin.password))
            first = date(2024, 1, 1)
            records = provider.search("40KCB", "L1C", first, first + timedelta(days=5 * len(zips)))
            sizes = [(r.size or 0) / 1e6 for r in records]
            one = timed_fetch(provider, records[:1], base / "one")
            many = timed_fetch(provider, records, base / "many")
            checked = "BLAKE3" if blake3_available() else "MD5"
            print(f"product zip: {sizes[0]:.1f} MB; fetch verifies with {checked}")
            print(f"1 product   : {sizes[0] / one:7.1f} MB/s ({one:.2f} s)")
            print(
                f"{len(records)} in parallel: {sum(sizes) / many:7.1f} MB/s in all ({many:.2f} s)"
            )
            sample = base / "one" / f"{records[0].product_id}.zip"
            for algorithm in ("BLAKE3", "MD5") if blake3_available() else ("MD5",):
                started = time.perf_counter()
                file_digest(sample, algorithm)
                spent = time.perf_counter() - started
                at_cdse = spent / (sizes[0] / 20.0)  # CDSE: 20 MB/s per connection
                print(
                    f"{algorithm:6s} hash: {sizes[0] / spent:7.1f} MB/s = {100 * spent / one:.0f} % "
                    f"of the 1-product fetch here, {100 * at_cdse:.1f} % of one at 20 MB/s"
                )
        finally:
            standin.stop()


if __name__ == "__main__":
    main()
