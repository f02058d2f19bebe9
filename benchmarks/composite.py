"""Benchmark one monthly composite: K masked index files of N x N pixels, four statistics.

    python -m benchmarks.composite --size 10980 --dates 12

Builds (once, cached) ``dates`` synthetic masked NDVI COGs of ``size`` x ``size`` pixels,
written by the index assets' own writer (int16, ZSTD, nodata 32767, scale 0.0001): a
smooth field plus per-pixel noise (sigma 300, about what a real NDVI carries) with about a
third of each date masked in cloud-sized blobs. Then, each in a fresh process so its peak
memory is its own:

- ``read_floor``: read every input once, strip by strip, and nothing else: the floor no
  composite can go under;
- ``composite``: ``compute_composite`` with median, mean, count and max (reads, reduces
  with xarray, writes and publishes four COGs).

Prints one JSON line per step ``{"step", "size", "dates", "seconds", "cpu_seconds",
"peak_rss_mb"}``, the composite's line adding ``ratio_to_read_floor`` (wall) and
``cpu_ratio_to_read_floor``, and a last line with the machine's load averages (the
machine may be shared: CPU seconds are the steadier figure).
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
from datetime import datetime, timedelta
from pathlib import Path

STEPS = ("read_floor", "composite")
STRIP = 512


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "s2_assets" / "bench"


def build(size: int, dates: int, cache: Path) -> list[Path]:
    """The cached inputs, built on first use (each date its own seed)."""
    folder = cache / f"composite_{size}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for day in range(dates):
        path = folder / f"date{day:02d}_NDVI_CM001.tif"
        if not path.exists():
            _write_input(path, size, seed=day)
        paths.append(path)
    return paths


def _write_input(path: Path, size: int, *, seed: int) -> None:
    import numpy as np
    import rasterio
    from affine import Affine

    from s2_assets.raster.io import OutputFormat, RasterWriter, gdal_env
    from s2_assets.raster.types import INDEX_NODATA, Grid

    grid = Grid(
        size, size, Affine(10, 0, 300000, 0, -10, 7800040),
        rasterio.crs.CRS.from_epsg(32740).to_wkt(),
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    # Clouds: a coarse random field (one cell per ~1 km) thresholded to about a third.
    cell = max(1, size // 100)
    coarse = rng.random((size // cell + 2, size // cell + 2)) < 0.33
    columns = np.arange(size)
    with gdal_env(), RasterWriter(
        path, grid, dtype="int16", nodata=INDEX_NODATA, output=OutputFormat("tif"), scale=1e-4
    ) as writer:  # fmt: skip
        for start in range(0, size, STRIP):
            rows = np.arange(start, min(start + STRIP, size))
            field = 3000 + 4000 * np.sin(rows[:, None] / 900.0) * np.cos(columns[None, :] / 700.0)
            values = field + rng.normal(0, 300, field.shape) + 200 * seed
            values = np.clip(values, -10000, 10000).astype(np.int16)
            values[coarse[rows // cell][:, columns // cell]] = INDEX_NODATA
            writer.write_rows(start, values)
        writer.publish()


def _read_floor(paths: list[Path]) -> None:
    import rasterio
    from rasterio.windows import Window

    from s2_assets.raster.io import gdal_env

    with gdal_env():
        for path in paths:
            with rasterio.open(path) as src:
                for start in range(0, src.height, STRIP):
                    src.read(1, window=Window(0, start, src.width, min(STRIP, src.height - start)))


def _composite(paths: list[Path], out: Path) -> None:
    from s2_assets.raster.composite import CompositeRequest, compute_composite
    from s2_assets.raster.stack import StackFile

    first = datetime(2024, 1, 1, 6, 35, 11)
    files = tuple(StackFile(first + timedelta(days=2 * i), p) for i, p in enumerate(paths))
    compute_composite(
        CompositeRequest(
            files=files, out_dir=out, stem="T00XXX_2024-01_NDVI_CM001", name="NDVI",
            mask_spec="CM001", ramp="RdYlGn", stretch=(-10000, 10000),
        )
    )  # fmt: skip


def run_step(step: str, paths: list[Path], out: Path) -> dict[str, float | str]:
    """Run one step in this process; its wall time, CPU time and this process's peak RSS."""
    import s2_assets.raster.composite  # noqa: F401  (imports are not part of the step)

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if step == "read_floor":
        _read_floor(paths)
    else:
        _composite(paths, out)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "step": step,
        "seconds": round(seconds, 2),
        # CPU time of all threads: on a shared machine far steadier than wall time.
        "cpu_seconds": round(
            usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime, 2
        ),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


def _peak_rss_mb() -> float:
    """VmHWM, not getrusage: Linux carries ru_maxrss over ``exec``."""
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", type=int, default=10980, help="pixels per side")
    parser.add_argument("--dates", type=int, default=12, help="masked files in the month")
    parser.add_argument("--cache", type=Path, default=_default_cache(), help="input cache")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    paths = build(args.size, args.dates, args.cache)
    if args.step:  # child process: one step, one JSON line
        print(json.dumps(run_step(args.step, paths, args.out)), flush=True)
        return 0
    results: dict[str, dict[str, float | str]] = {}
    scratch = Path(tempfile.mkdtemp(prefix="s2bench-composite-", dir=args.cache))
    try:
        for step in STEPS:
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.composite", "--step", step, "--size",
                 str(args.size), "--dates", str(args.dates), "--cache", str(args.cache),
                 "--out", str(scratch)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            result = {
                "size": args.size,
                "dates": args.dates,
                **json.loads(child.stdout.split("\n")[-2]),
            }
            results[step] = result
            if step == "composite":
                floor = results["read_floor"]
                result["ratio_to_read_floor"] = round(
                    float(result["seconds"]) / float(floor["seconds"]), 2
                )
                result["cpu_ratio_to_read_floor"] = round(
                    float(result["cpu_seconds"]) / float(floor["cpu_seconds"]), 2
                )
            print(json.dumps(result), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({"step": "load", "loadavg": [round(x, 2) for x in os.getloadavg()],
                      "cpus": os.cpu_count()}), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
