"""Benchmark masks and indices of one L2A against the JPEG2000 decode floor, robustly.

    python -m benchmarks.tile --size 10980 --rounds 3
    python -m benchmarks.tile --safe /path/to/S2B_MSIL2A_....SAFE
    python -m benchmarks.tile --size 10980 --products 2     # a ranged run of two products

Without ``--safe``, builds (once, cached) a synthetic L2A of ``size`` x ``size`` 10 m
pixels with JPEG2000 bands (``s2_assets.demo.products.build_safe``). The demo's bands are constant
per land-cover class, so they decode about ten times faster than real ones and would make
any ratio to the decode floor meaningless; unless ``--flat``, the nine bands the indices
read are re-encoded once with per-pixel noise (sigma 60 DN, about 8 bits per pixel, close
to what real L2A bands carry). Layout, metadata, SCL and cloud probability stay the demo's.
``--safe`` benchmarks any unpacked L2A instead, a real one included.

Each round runs three steps, each in a fresh process so its peak memory is its own:

- ``decode_floor``: decode every band the next steps need, once, with the same strip
  reader, and nothing else: the floor no implementation can go under;
- ``cloudmask``: one CM004 mask (``compute_cloud_masks``);
- ``indices``: all 12 indices, raw and masked by that CM004 (``compute_indices``).

``--products N`` measures a ranged run instead: each step does its work for N products
(the same one N times, into separate folders), and the indices step publishes each
product's files while the next product streams, as the indices asset does
(``publish_behind``); the ratios are then those of the whole run.

Rounds interleave the steps (floor, mask, indices, floor, mask, ...), so a change of load
on a shared machine hits the floor as much as the work measured against it. The headline
is the CPU ratio: CPU-seconds of mask + indices over CPU-seconds of the decode floor, all
threads counted. CPU time barely moves when other processes compete for the cores; wall
time does, so the wall ratio is printed beside it, and each step records the 1-minute
load average before and after it.

Prints JSON lines: one per step and round ``{"round", "step", "seconds", "cpu_seconds",
"peak_rss_mb", "load_before", "load_after"}``, one per round ``{"round", "step": "round",
"cpu_ratio", "wall_ratio", ...}``, and a last ``{"step": "median", ...}`` with the median
of each figure over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

MASK_SPEC = "CM004-CSH1-CMP1-CHP1-TCI1-ITER0"
STEPS = ("decode_floor", "cloudmask", "indices")
_SENSING = datetime(2024, 1, 1, 6, 35, 11, tzinfo=UTC)


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "s2_assets" / "bench"


TEXTURE_SIGMA = 60.0


def build(size: int, cache: Path, *, textured: bool = True) -> Path:
    """The cached synthetic L2A of ``size`` pixels a side, built on first use."""
    from s2_assets.demo.products import build_safe

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


def _decode_floor(safe: Path, products: int) -> None:
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
        for path in paths * products:
            with BandReader(path) as reader:
                height = reader.grid.height
                stream = RowStream(
                    reader, height=height, chunk_rows=strip_height(reader.block_rows),
                    executor=executor,
                )  # fmt: skip
                for start in range(0, height, 512):
                    stream.rows(start, start + 512)
                stream.close()


def _cloudmask(safe: Path, out: Path, products: int) -> None:
    from s2_assets.products import read_metadata
    from s2_assets.raster.product_masks import compute_cloud_masks

    metadata = read_metadata(safe)
    for number in range(products):
        compute_cloud_masks(
            product_id=metadata.product_uri, safe_dir=safe, side_products=None,
            metadata=metadata, specs=[MASK_SPEC], out_dir=out / str(number) / "CLOUDMASKS",
        )  # fmt: skip


def _indices(safe: Path, out: Path, products: int) -> None:
    from s2_assets.errors import S2AssetsError
    from s2_assets.products import read_metadata
    from s2_assets.raster.pipeline import publish_behind
    from s2_assets.raster.product_indices import compute_indices, stream_indices
    from s2_assets.specs import INDEX_NAMES

    metadata = read_metadata(safe)

    def arguments(folder: Path) -> dict[str, Any]:
        mask = folder / "CLOUDMASKS" / f"{metadata.product_uri}_{MASK_SPEC}.tif"
        return {
            "product_id": metadata.product_uri, "safe_dir": safe, "metadata": metadata,
            "indices": INDEX_NAMES, "masks": {MASK_SPEC: mask},
            "out_dir_for": lambda name: folder / "INDICES" / name,
        }  # fmt: skip

    if products == 1:  # what one product's materialization does
        compute_indices(**arguments(out / "0"))
        return
    jobs = [(n, partial(stream_indices, **arguments(out / str(n)))) for n in range(products)]
    for number, outcome in publish_behind(jobs):
        if isinstance(outcome, S2AssetsError):
            raise RuntimeError(f"product {number}: {outcome}")


def run_step(step: str, safe: Path, out: Path, products: int = 1) -> dict[str, float | str]:
    """Run one step in this process; its wall time, CPU time and this process's peak RSS."""
    from s2_assets.raster import product_indices, product_masks  # noqa: F401  (imports are not part of the step)

    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    started = time.perf_counter()
    if step == "decode_floor":
        _decode_floor(safe, products)
    elif step == "cloudmask":
        _cloudmask(safe, out, products)
    else:
        _indices(safe, out, products)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "step": step,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        # CPU time of all threads: on a shared machine far steadier than wall time.
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime - cpu_before, 2),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not getrusage: Linux carries ru_maxrss
    over ``exec``, so a child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_child(step: str, safe: Path, out: str, products: int) -> dict[str, Any]:
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.tile", "--step", step, "--safe", str(safe),
         "--out", out, "--products", str(products)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return result


def round_summary(steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mask + indices of one round against its decode floor."""
    floor, work = steps["decode_floor"], [steps["cloudmask"], steps["indices"]]
    seconds = sum(r["seconds"] for r in work)
    cpu = sum(r["cpu_seconds"] for r in work)
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in work),
        "cpu_ratio": round(cpu / floor["cpu_seconds"], 3) if floor["cpu_seconds"] else None,
        "wall_ratio": round(seconds / floor["seconds"], 3) if floor["seconds"] else None,
    }


def medians(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of every numeric figure over the rounds, per step."""
    out: dict[str, Any] = {}
    for step in (*STEPS, "round"):
        picked = [r for r in rows if r["step"] == step]
        keys = [k for k, v in picked[0].items() if isinstance(v, int | float) and k != "round"]
        out[step] = {k: round(statistics.median(r[k] for r in picked), 3) for k in keys}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980, help="pixels per side at 10 m")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three steps")
    parser.add_argument("--safe", type=Path, help="benchmark this unpacked L2A instead")
    parser.add_argument("--cache", type=Path, default=_default_cache(), help="product cache")
    parser.add_argument(
        "--flat", action="store_true", help="keep the demo's class-constant bands (no texture)"
    )
    parser.add_argument(
        "--products", type=int, default=1, help="products per step: a ranged run of N"
    )
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:  # child process: one step, one JSON line
        print(json.dumps(run_step(args.step, args.safe, args.out, args.products)), flush=True)
        return 0
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, not {args.rounds}")
    if args.products < 1:
        parser.error(f"--products must be at least 1, not {args.products}")
    if args.safe is not None and not (args.safe / "MTD_MSIL2A.xml").is_file():
        parser.error(f"--safe {args.safe}: no MTD_MSIL2A.xml there; give an unpacked L2A .SAFE")
    safe = (
        args.safe if args.safe is not None else build(args.size, args.cache, textured=not args.flat)
    )
    args.cache.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for number in range(1, args.rounds + 1):
        steps: dict[str, dict[str, Any]] = {}
        with tempfile.TemporaryDirectory(prefix="s2bench-", dir=args.cache) as scratch:
            for step in STEPS:
                steps[step] = {"round": number, **_run_child(step, safe, scratch, args.products)}
                rows.append(steps[step])
                print(json.dumps(steps[step]), flush=True)
        rows.append({"round": number, "step": "round", **round_summary(steps)})
        print(json.dumps(rows[-1]), flush=True)
    summary = medians(rows)
    print(
        json.dumps(
            {
                "step": "median",
                "rounds": args.rounds,
                "products": args.products,
                "product": safe.name,
                "cpu_ratio": summary["round"]["cpu_ratio"],
                "wall_ratio": summary["round"]["wall_ratio"],
                "peak_rss_mb": summary["round"]["peak_rss_mb"],
                **{step: summary[step] for step in STEPS},
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
