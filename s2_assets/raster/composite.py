"""Per-pixel statistics of a time stack of masked index files: the monthly composites.

A pixel's *observations* are its valid values over the stack (stored int16, not 32767: a
masked or no-data pixel of an input is no observation). Per pixel:

- ``count``: how many observations (uint8, or uint16 past 254 inputs; 0 = none);
- ``max``: the largest observation (the greenest pixel for NDVI-like indices);
- ``mean``: the sum of the observations divided by their count, **rounded to the nearest
  integer, halves away from zero** (2.5 -> 3, -2.5 -> -3), in exact integer arithmetic;
- ``median``: the middle observation of an odd count; for an even count **the mean of the
  two middle observations, rounded the same way** ((3 + 4) / 2 = 3.5 -> 4).

Every value is an observation or lies between two, so it stays inside the int16 range
with 32767 still free for "no observation". Values keep the inputs' scale (0.0001 for the
ratio indices). The stack is reduced strip by strip: one strip of rows of every input is
read (as an xarray ``DataArray``), reduced with xarray, written, and dropped, so memory
depends on the strip, not on the tile. Pure apart from the reads and writes it delegates to
``stack`` and ``outputs``; no Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from s2_assets.raster.io import COG_BLOCK, OutputFormat, gdal_env
from s2_assets.raster.outputs import OutputFile
from s2_assets.raster.pipeline import output_files
from s2_assets.raster.stack import StackFile, open_stack, stack_grid
from s2_assets.raster.strips import strips
from s2_assets.raster.types import INDEX_NODATA, RasterError, Recorder, WrittenRaster

STATISTICS = ("median", "mean", "count", "max")
# Bytes of int16 input per strip (all times): the strip's working set is a few times this.
STRIP_BUDGET_BYTES = 160 * 1024**2
COUNT_RAMP = "afmhot"
INT16_MIN = np.iinfo(np.int16).min


def round_half_away(
    numerator: NDArray[np.integer], denominator: NDArray[np.integer] | np.integer
) -> NDArray[Any]:
    """``numerator / denominator`` rounded to the nearest integer, halves away from zero.

    Exact (integer arithmetic); ``denominator`` must be positive where the result is used
    (elsewhere pass 1).
    """
    magnitude = (2 * np.abs(numerator) + denominator) // (2 * denominator)
    return np.where(numerator < 0, -magnitude, magnitude)


def count_dtype(times: int) -> str:
    """uint8 while the count fits below its reserved 255, else uint16."""
    return "uint8" if times <= 254 else "uint16"


def _kernel(values: NDArray[np.int16], statistics: Sequence[str]) -> tuple[NDArray[Any], ...]:
    """The statistics of ``values`` (time on the last axis, as ``xr.apply_ufunc`` gives it).

    One sort along time, then passes over 2-D planes only: stored nodata 32767 is above
    every valid value, so after sorting a pixel's ``n`` observations come first, its
    maximum is at ``n - 1``, its middle pair at ``(n - 1) // 2`` and ``n // 2``, and its
    sum is the plain sum minus 32767 per missing observation.
    """
    stack = np.moveaxis(values, -1, 0)  # back to (time, y, x): the strip's own layout
    times = stack.shape[0]
    # int32 holds any sum of up to 65535 int16 values; past 254 times the rounding's
    # doubled sums need int64.
    wide = np.int32 if times <= 254 else np.int64
    ordered = np.sort(stack, axis=0) if {"median", "max"} & set(statistics) else stack
    count = np.zeros(stack.shape[1:], dtype=wide)
    for plane in stack:
        count += plane != INDEX_NODATA
    seen = count > 0
    out: list[NDArray[Any]] = []
    for name in statistics:
        if name == "count":
            out.append(count)
        elif name == "max":
            out.append(_pick(ordered, count - 1, seen))
        elif name == "mean":
            total = np.zeros(stack.shape[1:], dtype=wide)
            for plane in stack:
                total += plane
            total -= (times - count) * wide(INDEX_NODATA)
            mean = round_half_away(total, np.where(seen, count, 1))
            out.append(np.where(seen, mean, INDEX_NODATA).astype(np.int16))
        else:  # median
            pair: NDArray[np.integer] = _pick(ordered, (count - 1) // 2, seen).astype(wide)
            pair += _pick(ordered, count // 2, seen)
            median = round_half_away(pair, wide(2))
            out.append(np.where(seen, median, INDEX_NODATA).astype(np.int16))
    return tuple(out)


def _pick(
    ordered: NDArray[np.int16], position: NDArray[np.integer], seen: NDArray[np.bool_]
) -> NDArray[np.int16]:
    """Per pixel, ``ordered[position]`` (32767 where not ``seen``), one plane at a time."""
    picked = np.full(ordered.shape[1:], INDEX_NODATA, dtype=np.int16)
    for t, plane in enumerate(ordered):
        np.copyto(picked, plane, where=seen & (position == t))
    return picked


def reduce_strip(
    block: xr.DataArray, statistics: Sequence[str] = STATISTICS
) -> dict[str, xr.DataArray]:
    """The statistics of one ``(time, y, x)`` block of stored values (32767 = no data).

    Returns int16 arrays (32767 where no observation) for median, mean and max, and the
    count as int32 (int64 past 254 times; the caller picks its stored type).

    Raises:
        RasterError: an unknown statistic name.
    """
    unknown = sorted(set(statistics) - set(STATISTICS))
    if unknown:
        raise RasterError(f"unknown statistic {unknown[0]!r}; valid: {', '.join(STATISTICS)}")
    wanted = tuple(statistics)
    if len(wanted) == 1:  # apply_ufunc wants one array back, not a tuple of one
        single = xr.apply_ufunc(
            lambda values: _kernel(values, wanted)[0], block, input_core_dims=[["time"]]
        )
        return {wanted[0]: single}
    results = xr.apply_ufunc(
        _kernel,
        block,
        kwargs={"statistics": wanted},
        input_core_dims=[["time"]],
        output_core_dims=[[] for _ in wanted],
    )
    return dict(zip(wanted, results, strict=True))


def strip_rows(times: int, width: int, *, budget: int = STRIP_BUDGET_BYTES) -> int:
    """Rows per strip: whole COG blocks (so no block is decoded twice) within ``budget``
    bytes of int16 input, at least 16 rows."""
    rows = budget // max(1, times * width * 2)
    if rows >= COG_BLOCK:
        return COG_BLOCK * (rows // COG_BLOCK)
    return max(16, rows)


@dataclass(frozen=True)
class CompositeRequest:
    """One composite: the observations of a month, where to write and what.

    ``name`` is the index, ``mask_spec`` the mask of the inputs, ``stem`` the common start
    of the output names (``<tile>_<YYYY-MM>_<INDEX>_<SPEC>``), ``ramp`` and ``stretch`` the
    index's quicklook colours and range (stored units).
    """

    files: tuple[StackFile, ...]
    out_dir: Path
    stem: str
    name: str
    mask_spec: str
    ramp: str
    stretch: tuple[int, int]
    statistics: tuple[str, ...] = STATISTICS


def compute_composite(
    request: CompositeRequest, *, rows: int | None = None, record: Recorder | None = None
) -> list[WrittenRaster]:
    """Write one COG per statistic of ``request``; nothing when it has no file.

    Outputs are ``<out_dir>/<stem>_<STAT>.tif``: int16, nodata 32767, the inputs' scale for
    median/mean/max; uint8 (uint16 past 254 inputs) for count, 255 (65535) reserved as
    nodata. Each is written beside its final name and renamed into place, after ``record``
    (when given) has written its provenance.

    Raises:
        RasterError: an input unreadable, not int16, or on another grid than the first.
    """
    if not request.files:
        return []
    unknown = sorted(set(request.statistics) - set(STATISTICS))
    if unknown:
        raise RasterError(f"unknown statistic {unknown[0]!r}; valid: {', '.join(STATISTICS)}")
    stack = open_stack(request.files, name=request.name)
    if stack.dtype != np.int16:
        raise RasterError(f"{request.files[0].path}: {stack.dtype} pixels; index files are int16")
    grid = stack_grid(stack)
    scale = float(stack.attrs["scale_factor_stored"])
    times = stack.sizes["time"]
    counts = count_dtype(times)
    count_nodata = int(np.iinfo(np.dtype(counts)).max)
    output = OutputFormat(fmt="tif", overview_resampling="NEAREST")
    # gdal_env bounds GDAL's block cache for the reads, the strip writes and the final
    # COG encoding (GDAL's default would be 5 % of the machine's memory).
    with gdal_env(), output_files() as files:
        for stat in request.statistics:
            is_count = stat == "count"
            files.append(
                OutputFile(
                    request.out_dir / f"{request.stem}_{stat.upper()}.tif", grid,
                    kind="count" if is_count else "index", name=request.name,
                    mask_spec=request.mask_spec, dtype=counts if is_count else "int16",
                    nodata=count_nodata if is_count else INDEX_NODATA, output=output,
                    scale=1.0 if is_count else scale,
                )
            )  # fmt: skip
        for start, stop in strips(grid.height, rows or strip_rows(times, grid.width)):
            block = stack.isel(y=slice(start, stop)).load()
            reduced = reduce_strip(block, request.statistics)
            seen = (
                reduced["count"] if "count" in reduced else (block != INDEX_NODATA).sum("time")
            ) > 0
            seen_np = np.asarray(seen.values)
            n_seen = int(np.count_nonzero(seen_np))
            for stat, file in zip(request.statistics, files, strict=True):
                values = np.asarray(reduced[stat].values)
                if stat == "count":
                    stored = values.astype(counts)
                    file.stats.add(
                        stored, include=np.ones_like(seen_np), valid=n_seen, masked=0,
                        nodata=seen_np.size - n_seen,
                    )  # fmt: skip
                    file.sampler.take_index(
                        start, values.astype(np.int16), masked=None, stretch=(0, max(times, 1)),
                        nodata=INDEX_NODATA,
                    )  # fmt: skip
                else:
                    stored = values
                    file.stats.add(
                        stored, include=seen_np, valid=n_seen, masked=0,
                        nodata=seen_np.size - n_seen,
                    )  # fmt: skip
                    file.sampler.take_index(
                        start, stored, masked=None, stretch=request.stretch, nodata=INDEX_NODATA
                    )
                file.write(start, stored)
        ramps = [COUNT_RAMP if s == "count" else request.ramp for s in request.statistics]
        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(
                pool.map(
                    lambda pair: pair[0].publish(pair[1], record), zip(files, ramps, strict=True)
                )
            )
