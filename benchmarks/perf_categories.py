"""CPU-seconds of a ``perf record`` profile, by what the samples were doing.

    perf record -F 99 -g -o indices.data -- python -m benchmarks.tile --step indices \\
        --safe PATH --out DIR
    python -m benchmarks.perf_categories floor=floor.data indices=indices.data

Unlike ``benchmarks.phases``, this profiles the real, overlapped run (every thread: the
read-ahead decoder, OpenJPEG's workers, the background writers). Each sample is charged
by the library its innermost frame is in (OpenJPEG decoding, numpy, ZSTD, libc, Python)
and, for kernel samples, by the kernel path on its stack (writes or reads through the page
cache, direct I/O, page faults). Prints a Markdown table: one column per profile, in
CPU-seconds (samples divided by the sampling rate, ``--hz``).
"""

from __future__ import annotations

import argparse
import subprocess
from collections import Counter

DECODING = "JPEG2000 decoding (OpenJPEG)"
_LIBRARIES = [
    ("libopenjp2", DECODING),
    ("libblosc", "ZSTD compression (GDAL's libzstd)"),
    ("libzstd", "ZSTD compression (GDAL's libzstd)"),
    ("_multiarray_umath", "numpy"),
    ("libc.so", "libc (memory copies, mostly)"),
    ("libpython", "Python interpreter"),
]
_KERNEL_PATHS = [
    ("exc_page_fault", "kernel: page faults (fresh memory)"),
    ("iomap_dio", "kernel: direct I/O"),
    ("ext4_buffered_write_iter", "kernel: writes through the page cache"),
    ("splice", "kernel: writes through the page cache"),
    ("filemap_read", "kernel: reads through the page cache"),
    ("unlink", "kernel: other file work"),
]


def category(frames: list[str]) -> str:
    """What a sample (its frames, innermost first) was doing."""
    leaf = frames[0]
    if "kernel" in leaf:
        stack = " ".join(frames)
        return next(
            (name for marker, name in _KERNEL_PATHS if marker in stack),
            "kernel: other (scheduling, interrupts, threads)",
        )
    return next(
        (name for marker, name in _LIBRARIES if marker in leaf),
        "GDAL, rasterio and other libraries",
    )


def categories(path: str) -> tuple[Counter[str], int]:
    """Samples per category, and all samples, of one ``perf.data`` file."""
    script = subprocess.run(
        ["perf", "script", "-i", path, "-F", "ip,sym,dso"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    counts: Counter[str] = Counter()
    total = 0
    for block in script.split("\n\n"):
        frames = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if frames:
            counts[category(frames)] += 1
            total += 1
    return counts, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", help="NAME=perf.data, one column each")
    parser.add_argument("--hz", type=float, default=99.0, help="perf record's -F")
    args = parser.parse_args(argv)
    columns = {name: categories(path) for name, path in (p.split("=", 1) for p in args.profiles)}
    rows = sorted(
        {name for counts, _ in columns.values() for name in counts},
        key=lambda name: -max(counts[name] for counts, _ in columns.values()),
    )
    print("| CPU-seconds | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for row in rows:
        print(
            f"| {row} | "
            + " | ".join(f"{c[row] / args.hz:.1f}" for c, _ in columns.values())
            + " |"
        )
    beyond = [(total - counts[DECODING]) / args.hz for counts, total in columns.values()]
    print("| **beyond decoding** | " + " | ".join(f"**{b:.1f}**" for b in beyond) + " |")
    totals = [total / args.hz for _, total in columns.values()]
    print("| **total** | " + " | ".join(f"**{t:.1f}**" for t in totals) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
