"""What verifying a full-size product before publishing costs (``s2_assets.library.integrity``).

    python -m benchmarks.verify --size 10980

Uses the cached synthetic L2A of ``benchmarks.tile`` (built on first use: every image the
metadata lists, SCL and masks, 10980 px at 10 m), then walks it ``--repeat`` times with
:func:`s2_assets.library.integrity.product_problems` and prints one JSON line: median wall and CPU
seconds per product, the files and tile-parts walked, the bytes they hold, and the load
average (the machine may be shared). The first walk is reported apart. With ``--cold``,
every image's pages are dropped from the page cache (``posix_fadvise DONTNEED``) before each
walk, so the figure includes reading the headers from disk, as ``s2-assets clean`` does on
a library nobody read lately; before publishing, the files were just unpacked and are in
the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from benchmarks.tile import _default_cache, build
from s2_assets.library.integrity import product_problems


def _tile_parts(path: Path) -> int:
    """Tile-parts of a JPEG 2000 (SOT markers with Lsot=10, as the walk counts them)."""
    data = path.read_bytes()
    count, start = 0, 0
    while (found := data.find(b"\xff\x90\x00\x0a", start)) != -1:
        count += 1
        start = found + 1
    return count


def _drop_from_cache(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=_default_cache())
    parser.add_argument(
        "--cold", action="store_true", help="drop the images from the page cache first"
    )
    args = parser.parse_args(argv)
    safe = build(args.size, args.cache)
    images = sorted(p for p in safe.rglob("*") if p.suffix in (".jp2", ".tif"))
    walls, cpus = [], []
    for _ in range(args.repeat):
        if args.cold:
            _drop_from_cache(images)
        wall, cpu = time.perf_counter(), time.process_time()
        problems = product_problems(safe)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        if problems:
            raise SystemExit(f"{safe.name} is not whole: {problems[:3]}")
    print(
        json.dumps(
            {
                "product": safe.name,
                "size_px": args.size,
                "images": len(images),
                "tile_parts": sum(_tile_parts(p) for p in images if p.suffix == ".jp2"),
                "image_bytes": sum(p.stat().st_size for p in images),
                "first_seconds": round(walls[0], 4),
                "median_seconds": round(statistics.median(walls), 4),
                "median_cpu_seconds": round(statistics.median(cpus), 4),
                "cold": args.cold,
                "loadavg_1m": round(os.getloadavg()[0], 2),
                "cpus": os.cpu_count(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
