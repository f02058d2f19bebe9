"""Benchmark one synthetic L2A tile through the code the assets call.

    python -m benchmarks.tile --size 10980

Builds (once, cached) a synthetic L2A of ``size`` x ``size`` 10 m pixels with JPEG2000
bands (``s2_assets.demo.build_safe``). The demo's bands are constant per land-cover class,
so they decode about ten times faster than real ones and would make any ratio to the
decode floor meaningless; unless ``--flat``, the nine bands the indices read are
re-encoded once with per-pixel noise (sigma 60 DN, about 8 bits per pixel, close to what real
L2A bands carry). Layout, metadata, SCL and cloud probability stay the demo's. Then each step
runs in a fresh process so its peak memory is its own:

- ``decode_floor``: decode every band the next steps need, once, with the same strip
  reader, and nothing else: the floor no implementation can go under;
- ``cloudmask``: one CM004 mask (``compute_cloud_masks``);
- ``indices``: all 12 indices, raw and masked by that CM004 (``compute_indices``).

Prints one JSON line per step ``{"step", "seconds", "peak_rss_mb"}`` and a last line
``{"step": "total", "seconds", "peak_rss_mb", "ratio_to_decode_floor"}`` where total is
the mask plus the indices.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

MASK_SPEC = "CM004-CSH1-CMP1-CHP1-TCI1-ITER0"
STEPS = ("decode_floor", "cloudmask", "indices")
_SENSING = datetime(2024, 1, 1, 6, 35, 11, tzinfo=UTC)


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "s2_assets" / "bench"


TEXTURE_SIGMA = 60.0


def build(size: int, cache: Path, *, textured: bool = True) -> Path:
    """The cached synthetic L2A of ``size`` pixels a side, built on first use."""
    from s2_assets.demo import build_safe

    folder = cache / f"L2A_{size}_{'textured' if textured else 'flat'}"
    done = folder / "DONE"
    if done.exists():
        return Path(done.read_text(encoding="utf-8").strip())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    safe = build_safe(folder, level="L2A", sensing=_SENSING, size=size, cloud_cover=25.0)
    if textured:
        _add_texture(safe)
    done.write_text(str(safe), encoding="utf-8")
    return safe


def _add_texture(safe: Path) -> None:
    """Re-encode the index bands with per-pixel noise, losslessly, as the demo wrote them."""
    import numpy as np
    import rasterio

    from s2_assets.products import NATIVE_RESOLUTION, band_path, read_metadata
    from s2_assets.raster.indices import INDICES, bands_needed

    metadata = read_metadata(safe)
    rng = np.random.default_rng(0)
    for band in bands_needed(tuple(INDICES)):
        path = band_path(safe, metadata, band, NATIVE_RESOLUTION[band])
        with rasterio.open(path) as src:
            profile = src.profile
            values = src.read(1)
        noise = rng.normal(0.0, TEXTURE_SIGMA, values.shape).astype(np.float32)
        textured = np.clip(values + noise, 1, 65534).astype(np.uint16)
        textured[values == 0] = 0  # keep no data where the demo put it
        del noise
        partial = path.with_name(f".part.{path.name}")  # a .jp2 name: GDAL writes GeoJP2 boxes
        blocks = {"BLOCKXSIZE": 1024, "BLOCKYSIZE": 1024} if values.shape[0] > 1024 else {}
        with rasterio.open(
            partial, "w", **{**profile, "driver": "JP2OpenJPEG"}, QUALITY=100,
            REVERSIBLE="YES", YCBCR420="NO", **blocks,
        ) as dst:  # fmt: skip
            dst.write(textured, 1)
        os.replace(partial, path)
        for sidecar in path.parent.glob(f".part.{path.name}.aux.xml"):
            sidecar.unlink()
        with rasterio.open(path) as check:
            if check.transform != profile["transform"] or check.crs != profile["crs"]:
                raise RuntimeError(f"{path.name}: georeferencing lost while adding texture")


def _decode_floor(safe: Path) -> None:
    from s2_assets.products import NATIVE_RESOLUTION, band_path, read_metadata
    from s2_assets.raster.indices import INDICES, bands_needed
    from s2_assets.raster.io import BandReader, gdal_env
    from s2_assets.raster.strips import RowStream, strip_height

    metadata = read_metadata(safe)
    paths = [band_path(safe, metadata, "SCL", 20)] + [
        band_path(safe, metadata, band, NATIVE_RESOLUTION[band])
        for band in bands_needed(tuple(INDICES))
    ]
    with gdal_env(), ThreadPoolExecutor(max_workers=1) as executor:
        for path in paths:
            with BandReader(path) as reader:
                height = reader.grid.height
                stream = RowStream(
                    reader, height=height, chunk_rows=strip_height(reader.block_rows),
                    executor=executor,
                )  # fmt: skip
                for start in range(0, height, 512):
                    stream.rows(start, start + 512)
                stream.close()


def _cloudmask(safe: Path, out: Path) -> None:
    from s2_assets.products import read_metadata
    from s2_assets.raster.compute import compute_cloud_masks

    metadata = read_metadata(safe)
    compute_cloud_masks(
        product_id=metadata.product_uri, safe_dir=safe, side_products=None, metadata=metadata,
        specs=[MASK_SPEC], out_dir=out / "CLOUDMASKS",
    )  # fmt: skip


def _indices(safe: Path, out: Path) -> None:
    from s2_assets.products import read_metadata
    from s2_assets.raster.compute import compute_indices
    from s2_assets.specs import INDEX_NAMES

    metadata = read_metadata(safe)
    mask = out / "CLOUDMASKS" / f"{metadata.product_uri}_{MASK_SPEC}.tif"
    compute_indices(
        product_id=metadata.product_uri, safe_dir=safe, metadata=metadata, indices=INDEX_NAMES,
        masks={MASK_SPEC: mask}, out_dir_for=lambda name: out / "INDICES" / name,
    )  # fmt: skip


def run_step(step: str, safe: Path, out: Path) -> dict[str, float | str]:
    """Run one step in this process; its wall time, CPU time and this process's peak RSS."""
    import s2_assets.raster.compute  # noqa: F401  (imports are not part of the step)

    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    started = time.perf_counter()
    if step == "decode_floor":
        _decode_floor(safe)
    elif step == "cloudmask":
        _cloudmask(safe, out)
    else:
        _indices(safe, out)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "step": step,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        # CPU time of all threads: on a shared machine far steadier than wall time.
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime - cpu_before, 2),
    }


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage: Linux carries ru_maxrss
    over ``exec``, so a child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980, help="pixels per side at 10 m")
    parser.add_argument("--cache", type=Path, default=_default_cache(), help="product cache")
    parser.add_argument(
        "--flat", action="store_true", help="keep the demo's class-constant bands (no texture)"
    )
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--safe", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:  # child process: one step, one JSON line
        print(json.dumps(run_step(args.step, args.safe, args.out)), flush=True)
        return 0
    safe = build(args.size, args.cache, textured=not args.flat)
    results = []
    with tempfile.TemporaryDirectory(prefix="s2bench-", dir=args.cache) as scratch:
        for step in STEPS:
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.tile", "--step", step, "--safe", str(safe),
                 "--out", scratch],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            result = json.loads(child.stdout.strip().splitlines()[-1])
            results.append(result)
            print(json.dumps(result), flush=True)
    floor = results[0]["seconds"]
    work = results[1:]
    total = round(sum(r["seconds"] for r in work), 2)
    print(
        json.dumps(
            {
                "step": "total",
                "seconds": total,
                "peak_rss_mb": max(r["peak_rss_mb"] for r in work),
                "ratio_to_decode_floor": round(total / floor, 3) if floor else None,
                "cpu_ratio_to_decode_floor": round(
                    sum(r["cpu_seconds"] for r in work) / results[0]["cpu_seconds"], 3
                ),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
