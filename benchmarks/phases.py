"""Where the CPU-seconds of a mask + indices run go, phase by phase.

    python -m benchmarks.phases --safe PATH [--out DIR]

Runs one CM004 mask and the 12 indices raw + masked (as ``benchmarks.tile`` does) with
every overlap switched off (no read-ahead thread, one output published at a time), so the
process's CPU time while a function runs is that function's own, GDAL's worker threads
included. Each hooked function adds its CPU time, minus that of hooked functions it
calls, to its phase. Prints one JSON line per phase ``{"phase", "cpu_seconds", "share"}``
and a last ``{"phase": "total", ...}``. The phases cost more together than an overlapped
run (no thread overlaps another), but their proportions are the point.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import tempfile
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

_TOTALS: dict[str, float] = defaultdict(float)
_STACK: list[float] = []  # CPU time of hooked children, one entry per active hook


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _hook(owner: Any, attribute: str, phase: str) -> None:
    """Replace ``owner.attribute`` with a wrapper charging its own CPU time to ``phase``."""
    original = getattr(owner, attribute, None)
    if original is None:
        return

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        _STACK.append(0.0)
        started = _cpu()
        try:
            return original(*args, **kwargs)
        finally:
            spent = _cpu() - started
            children = _STACK.pop()
            _TOTALS[phase] += spent - children
            if _STACK:
                _STACK[-1] += spent

    setattr(owner, attribute, timed)


def install() -> None:
    """Hook the raster code's phases and switch off every overlap."""
    from s2_assets.raster import (
        cog_source,
        direct_io,
        indices,
        io,
        masks,
        outputs,
        overviews,
        pipeline,
        product_indices,
        quicklook,
        strips,
        zstd_tiles,
    )

    original_init = strips.RowStream.__init__

    def serial_init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["executor"] = None  # read in the calling thread, so decoding is timed
        original_init(self, *args, **kwargs)

    strips.RowStream.__init__ = serial_init  # type: ignore[method-assign]
    pipeline.PUBLISH_WORKERS = 1
    direct_io._background = lambda: _Immediate()  # type: ignore[assignment,return-value]
    hooks: list[tuple[Any, str, str]] = [
        (io.BandReader, "read_rows", "decode"),
        (product_indices, "upsample2_bilinear_float32", "upsampling"),
        (product_indices, "upsample2_touched", "upsampling"),
        (product_indices, "upsample2_nearest", "upsampling"),
        (indices, "index_values", "index math"),
        (indices, "apply_mask", "masking"),
        (indices, "mask_fill", "masking"),
        (indices, "apply_mask_fill", "masking"),
        (product_indices, "_mask_rows", "masking"),
        (masks, "compute_masks", "cloud mask algorithm"),
        (masks, "encode_mask", "cloud mask algorithm"),
        (masks, "mask_nodata", "cloud mask algorithm"),
        (outputs.StatsAccumulator, "add", "statistics"),
        (outputs.StatsAccumulator, "add_excluding", "statistics"),
        (quicklook.Sampler, "take_index", "quicklooks"),
        (quicklook.Sampler, "take_mask", "quicklooks"),
        (quicklook.Sampler, "png", "quicklooks"),
        (io.RasterWriter, "write_rows", "strips handed to the writers"),
        (overviews.Level, "take", "overview decimation"),
        (zstd_tiles.TileCompressor, "encode_group", "COG compression (row differencing + ZSTD)"),
        (direct_io.AppendFile, "append", "tiles and COGs written around the page cache"),
        (cog_source, "copy_ranges", "COG assembly: compressed tiles read back"),
        (cog_source.TileLayer, "_put_raw", "raw scratch (overview rows)"),
        (cog_source.TileLayer, "_read_raw", "raw scratch (overview rows)"),
        (io.RasterWriter, "publish", "COG assembly (header, tile copy) or encoding"),
    ]
    for owner, attribute, phase in hooks:
        _hook(owner, attribute, phase)


class _Immediate:
    """Stands in for direct_io's background writer: writes in the calling thread, so
    their CPU time is charged to the phase that asked for them."""

    def submit(self, function: Callable[[], None]) -> Future[None]:
        future: Future[None] = Future()
        try:
            function()
            future.set_result(None)
        except Exception as exc:  # handed on, as the real executor does
            future.set_exception(exc)
        return future


def run(
    safe: Path, out: Path, step: Callable[[Path, Path], None] | None = None
) -> list[dict[str, Any]]:
    """Run the mask and the indices under the hooks; one row per phase, then the total."""
    from benchmarks.tile import _cloudmask, _indices

    install()
    started = _cpu()
    _cloudmask(safe, out)
    _indices(safe, out)
    total = _cpu() - started
    _TOTALS["other (strip assembly, bookkeeping)"] += total - sum(_TOTALS.values())
    rows: list[dict[str, Any]] = [
        {"phase": phase, "cpu_seconds": round(seconds, 2), "share": round(seconds / total, 3)}
        for phase, seconds in sorted(_TOTALS.items(), key=lambda item: -item[1])
    ]
    rows.append({"phase": "total", "cpu_seconds": round(total, 2), "share": 1.0})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--safe", type=Path, required=True, help="the L2A to run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="s2phases-") as scratch:
        for row in run(args.safe, Path(scratch)):
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
