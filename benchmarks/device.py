"""What the disk under a folder can move around the page cache: the floor of publishing.

    python -m benchmarks.device [--dir DIR] [--gb 4] [--rounds 3]

Publishing a product's COGs reads their compressed tiles back from scratch files and
writes the COGs (``s2_assets.raster.direct_io``), gigabytes each way for a full tile, after
the last strip. This measures the device alone with the same kind of I/O (``O_DIRECT``,
8 MB requests): writing ``--gb`` GB, reading them back, and copying them to a second file
(read and write interleaved, as publishing does), with one and with four requests in
flight. Rounds interleave the measurements. Prints one JSON line per measurement and round
``{"round", "test", "threads", "seconds", "gb_per_s"}`` and a last line with the medians.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CHUNK = 8 << 20
TESTS = ("write", "read", "copy")


def _direct(path: Path, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_DIRECT", 0), 0o644)


def _timed(chunks: int, threads: int, each: Callable[[memoryview, int], None]) -> float:
    """Seconds to run ``each(buffer, offset)`` for every chunk, ``threads`` at a time."""
    local = threading.local()

    def one(index: int) -> None:
        if not hasattr(local, "buffer"):  # page-aligned, as O_DIRECT wants
            local.buffer = memoryview(mmap.mmap(-1, CHUNK))
            local.buffer[:] = os.urandom(CHUNK)
        each(local.buffer, index * CHUNK)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(chunks)))
    return time.perf_counter() - started


def measure(test: str, folder: Path, chunks: int, threads: int) -> float:
    """Seconds for one measurement; ``source`` must exist for read and copy."""
    source, target = folder / "source", folder / "target"
    if test == "write":
        fd = _direct(source, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            return _timed(chunks, threads, lambda buffer, at: _all(os.pwrite(fd, buffer, at)))
        finally:
            os.close(fd)
    fd = _direct(source, os.O_RDONLY)
    out = _direct(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) if test == "copy" else -1
    try:

        def step(buffer: memoryview, at: int) -> None:
            _all(os.preadv(fd, [buffer], at))
            if out >= 0:
                _all(os.pwrite(out, buffer, at))

        return _timed(chunks, threads, step)
    finally:
        os.close(fd)
        if out >= 0:
            os.close(out)


def _all(done: int) -> None:
    if done != CHUNK:
        raise OSError(f"short transfer: {done} of {CHUNK} bytes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--gb", type=float, default=4.0, help="gigabytes per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    chunks = max(1, int(args.gb * 1e9) // CHUNK)
    rows: list[dict[str, float | int | str]] = []
    with tempfile.TemporaryDirectory(prefix="s2device-", dir=args.dir) as scratch:
        for number in range(1, args.rounds + 1):
            for test in TESTS:
                for threads in (1, 4):
                    seconds = measure(test, Path(scratch), chunks, threads)
                    rows.append({
                        "round": number, "test": test, "threads": threads,
                        "seconds": round(seconds, 2),
                        "gb_per_s": round(chunks * CHUNK / seconds / 1e9, 2),
                    })  # fmt: skip
                    print(json.dumps(rows[-1]), flush=True)
    medians = {
        f"{test}x{threads}": statistics.median(
            float(r["gb_per_s"]) for r in rows if r["test"] == test and r["threads"] == threads
        )
        for test in TESTS
        for threads in (1, 4)
    }
    print(json.dumps({"step": "median", "gb": args.gb, "gb_per_s": medians}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
