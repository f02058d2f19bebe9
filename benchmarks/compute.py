"""CPU-seconds of the index step's numpy compute on a few strips, with no file I/O at all.

    python -m benchmarks.compute                              # cached 10980 px product
    python -m benchmarks.compute --safe /path/to/L2A.SAFE --first-strip 4 --strips 4
    python -m benchmarks.compute --baseline /tmp/old          # old code against this one

Times what ``compute_indices`` does per 512-row strip once the bands are decoded:
row streams serving strips (halo rows of the 20 m bands included), offsets, the
bilinear 20 m -> 10 m upsampling and its no-data spread, the 12 index formulas,
masking by one mask, statistics and quicklook samples (``_read_index_strip``,
``_mask_rows``, ``_write_index_strip`` of :mod:`s2_assets.raster.product_indices`).
The strip's file writes are replaced by a digest of the stored values, so neither
JPEG2000 decoding nor COG encoding is in the figure. The bands' rows (whole JPEG2000
tile rows around the strips) are decoded once and cached under
``~/.cache/s2_assets/bench/compute``; the mask is SCL's cloud and shadow classes
(3, 8, 9, 10) at 20 m, standing in for a CM004 mask (masking is branch-free, so only
its share of hidden pixels could matter, and it does not).

After a warm-up round (the first allocations of a process fault their pages in; over a
whole product's strips the allocator is in its steady state), each round runs the
strips once and prints ``{"code", "round", "cpu_seconds",
"digest"}`` (``time.process_time``: this process only; the compute is single-threaded).
With ``--baseline DIR`` (a directory holding another ``s2_assets`` package, say
``git archive <commit> s2_assets | tar -x -C DIR``), rounds alternate between a fresh
process importing that package and one importing this one (or the package in
``--against DIR``), and the last line gives
each side's median and whether every round of both produced the same digest (the
stored values, statistics and quicklook pixels of all 24 outputs).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.tile import _default_cache

CLOUD_CLASSES = (3, 8, 9, 10)  # SCL: cloud shadow, medium and high cloud, cirrus
MASK_SPEC = "CM004-CSH1-CMP1-CHP1-TCI1-ITER0"


def _default_safe() -> Path:
    done = _default_cache() / "L2A_10980_textured" / "DONE"
    if not done.exists():
        raise SystemExit(f"{done} is missing: build it with python -m benchmarks.tile")
    return Path(done.read_text(encoding="utf-8").strip())


class _Window:
    """A band's decoded rows ``first``.. of whole tile rows; reads outside come back
    uninitialized (the stream reads them ahead but the strips never use them)."""

    def __init__(self, rows: np.ndarray, first: int) -> None:
        self.rows, self.first = rows, first

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        lo, hi = start - self.first, stop - self.first
        if lo >= 0 and hi <= len(self.rows):
            return self.rows[lo:hi]
        return np.empty((stop - start, self.rows.shape[1]), dtype=self.rows.dtype)


def _inputs(safe: Path, first: int, stop: int) -> dict[str, Any]:
    """Decoded rows of every band (and SCL) the strips ``first``..``stop`` need, cached."""
    from s2_assets.products import NATIVE_RESOLUTION, band_path, read_metadata
    from s2_assets.raster import indices as ix
    from s2_assets.raster.io import BandReader
    from s2_assets.specs import INDEX_NAMES

    key = hashlib.sha256(f"{safe.resolve()}:{first}:{stop}".encode()).hexdigest()[:16]
    cache = _default_cache() / "compute" / f"{key}.npz"
    metadata = read_metadata(safe)
    bands = ix.bands_needed(INDEX_NAMES)
    if not cache.exists():
        arrays: dict[str, np.ndarray] = {}
        for band in (*bands, "SCL"):
            resolution = NATIVE_RESOLUTION.get(band, 20)  # SCL: 20 m
            with BandReader(band_path(safe, metadata, band, resolution)) as reader:
                scale = 1 if resolution == 10 else 2
                block = reader.block_rows
                # Whole tile rows around the strips and their halo rows.
                lo = max(0, first // scale - 1) // block * block
                hi = min(reader.grid.height, -(-(stop // scale + 1) // block) * block)
                arrays[band] = reader.read_rows(lo, hi)
                arrays[f"{band}:first"] = np.array(lo)
                arrays[f"{band}:height"] = np.array(reader.grid.height)
                arrays[f"{band}:block"] = np.array(block)
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(".part.npz")
        np.savez(partial, **arrays)
        partial.rename(cache)
    with np.load(cache) as data:
        loaded = {name: data[name] for name in data.files}
    return {"metadata": metadata, "bands": bands, "arrays": loaded}


class _Output:
    """What ``_write_index_strip`` uses of an output file, the write replaced by a digest."""

    def __init__(self, name: str, spec: str | None, height: int, width: int) -> None:
        from s2_assets.raster.outputs import StatsAccumulator
        from s2_assets.raster.quicklook import Sampler

        self.name, self.mask_spec = name, spec
        self.stats = StatsAccumulator()
        self.sampler = Sampler(height, width)
        self.digest = hashlib.sha256()
        self.hashing = 0.0  # CPU-seconds spent on the digest, taken out of the figure

    def write(
        self, start: int, stored: np.ndarray, variants: Sequence[tuple[_Output, np.ndarray]] = ()
    ) -> None:
        """Digest a strip (and of each masked variant written with it)."""
        for output, values in ((self, stored), *variants):
            began = time.process_time()
            output.digest.update(start.to_bytes(8, "little"))
            output.digest.update(np.ascontiguousarray(values).data)
            output.hashing += time.process_time() - began


def _round(inputs: dict[str, Any], first: int, stop: int, strip_rows: int) -> tuple[float, str]:
    from s2_assets.raster import indices as ix
    from s2_assets.raster import product_indices as pi
    from s2_assets.raster.strips import RowStream, strips
    from s2_assets.specs import INDEX_NAMES

    arrays = inputs["arrays"]

    def stream(name: str) -> RowStream:
        window = _Window(arrays[name], int(arrays[f"{name}:first"]))
        return RowStream(
            window, height=int(arrays[f"{name}:height"]), chunk_rows=int(arrays[f"{name}:block"])
        )

    height = int(arrays["B04:height"])
    width = arrays["B04"].shape[1]
    outputs = [_Output(n, s, height, width) for n in INDEX_NAMES for s in (None, MASK_SPEC)]
    plan = [(out.mask_spec, out) for out in outputs]
    # The benchmark's stand-in mask, outside the timed part.
    scl = arrays["SCL"]
    mask = _Window(np.isin(scl, CLOUD_CLASSES).astype(np.uint8), int(arrays["SCL:first"]))
    streams = {band: stream(band) for band in inputs["bands"]}
    streams[f"mask:{MASK_SPEC}"] = RowStream(
        mask, height=int(arrays["SCL:height"]), chunk_rows=int(arrays["SCL:block"])
    )
    grid = type("GridStub", (), {"height": height})()
    # Temporaries reused from strip to strip, as compute_indices does (newer code only).
    scratch = ix.Scratch() if hasattr(ix, "Scratch") else None

    def reused(function: Any) -> dict[str, Any]:
        takes = "scratch" in inspect.signature(function).parameters
        return {"scratch": scratch} if takes else {}

    began = time.process_time()
    for start, end in strips(height, strip_rows):
        if end <= first or start >= stop:
            continue
        strip = pi._read_index_strip(
            inputs["bands"], streams, inputs["metadata"], start, end, **reused(pi._read_index_strip)
        )
        masks = {MASK_SPEC: pi._mask_rows(streams[f"mask:{MASK_SPEC}"], grid, start, end)}  # type: ignore[arg-type]
        pi._write_index_strip(
            INDEX_NAMES, plan, strip, masks, start, "tif", **reused(pi._write_index_strip)
        )  # type: ignore[arg-type]
    seconds = time.process_time() - began - sum(out.hashing for out in outputs)
    digest = hashlib.sha256()
    for out in outputs:
        digest.update(out.digest.digest())
        digest.update(repr(out.stats.result(1.0)).encode())
        digest.update(out.sampler.image.tobytes())
    return seconds, digest.hexdigest()[:16]


def _worker(args: argparse.Namespace, code: str) -> None:
    import s2_assets

    first = args.first_strip * args.strip_rows
    stop = first + args.strips * args.strip_rows
    inputs = _inputs(args.safe, first, stop)
    _round(inputs, first, stop, args.strip_rows)  # warm-up: the allocator reaches steady state
    for number in range(args.rounds):
        seconds, digest = _round(inputs, first, stop, args.strip_rows)
        line = {"code": code, "round": number + 1, "cpu_seconds": round(seconds, 3)}
        line["package"] = str(Path(s2_assets.__file__).parent)
        print(json.dumps(line | {"digest": digest}), flush=True)


def _compare(args: argparse.Namespace) -> None:
    here = str(Path(__file__).resolve().parents[1])
    current = str(args.against.resolve()) if args.against else here
    sides = {"baseline": str(args.baseline.resolve()), "current": current}
    common = [
        "--safe", str(args.safe), "--first-strip", str(args.first_strip),
        "--strips", str(args.strips), "--strip-rows", str(args.strip_rows), "--rounds", "1",
    ]  # fmt: skip
    _worker_run(here, "current", common)  # fills the input cache outside the timed rounds
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    digests: set[str] = set()
    for _ in range(args.rounds):
        for side, path in sides.items():
            for line in _worker_run(path, side, common):
                seconds[side].append(line["cpu_seconds"])
                digests.add(line["digest"])
    medians = {side: round(statistics.median(values), 3) for side, values in seconds.items()}
    load = os.getloadavg()[0]
    print(json.dumps({"median": medians, "identical": len(digests) == 1, "load_after": load}))


def _worker_run(path: str, side: str, common: list[str]) -> list[dict[str, Any]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([path, str(Path(__file__).parents[1])]))
    command = [sys.executable, "-m", "benchmarks.compute", "--worker", side, *common]
    # Not from the checkout: its directory would come first on sys.path, before ``path``.
    done = subprocess.run(
        command, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    for line in lines:
        print(json.dumps(line), flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--safe", type=Path, default=None, help="unpacked L2A (default: cached)")
    parser.add_argument("--first-strip", type=int, default=2, help="first 512-row strip timed")
    parser.add_argument("--strips", type=int, default=4, help="strips timed per round")
    parser.add_argument("--strip-rows", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="directory holding the old s2_assets")
    parser.add_argument(
        "--against", type=Path, help="with --baseline: the other side (default: this checkout)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.safe = args.safe or _default_safe()
    if args.baseline is not None:
        _compare(args)
    else:
        _worker(args, args.worker or "current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
