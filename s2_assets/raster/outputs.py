"""One output file in the making: its writer, running statistics and quicklook.

Strips arrive in order; each updates the file, the value statistics and the quicklook
sample, so nothing of the whole raster is ever held in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from s2_assets.raster.io import OutputFormat, RasterWriter
from s2_assets.raster.quicklook import Sampler
from s2_assets.raster.types import Grid, RasterStats, Recorder, WrittenRaster


class StatsAccumulator:
    """Running pixel counts, minimum, maximum and sum of stored values."""

    def __init__(self) -> None:
        self.valid = 0
        self.masked = 0
        self.nodata = 0
        self._min: int | None = None
        self._max: int | None = None
        self._sum = 0.0
        self._count = 0

    def add(
        self,
        values: NDArray[np.integer],
        *,
        include: NDArray[np.bool_],
        valid: int,
        masked: int,
        nodata: int,
    ) -> None:
        """Add a strip: ``include`` picks the ``values`` for min, max and mean; the three
        counts say how many of its pixels were valid, masked and without data."""
        self.valid += valid
        self.masked += masked
        self.nodata += nodata
        counted = int(np.count_nonzero(include))
        if counted:
            # Reductions with ``where=`` avoid copying the selected pixels out first.
            low = int(np.min(values, where=include, initial=np.iinfo(values.dtype).max))
            high = int(np.max(values, where=include, initial=np.iinfo(values.dtype).min))
            self._min = low if self._min is None else min(self._min, low)
            self._max = high if self._max is None else max(self._max, high)
            self._sum += float(np.sum(values, where=include, dtype=np.int64))
            self._count += counted

    def add_excluding(
        self,
        values: NDArray[np.integer],
        *,
        excluded: int,
        valid: int,
        masked: int,
        nodata: int,
        included: int | None = None,
    ) -> None:
        """:meth:`add` with ``include`` = ``values != excluded`` (the file's nodata);
        ``included``, when the caller knows it, is how many values that includes.

        When ``excluded`` is the dtype's maximum (32767 for int16 indices, 255 for uint8
        masks) this needs no mask at all: the minimum of all values is the minimum of
        the included ones, the maximum is found after a wrapping ``+ 1`` turns the
        excluded value into the smallest, and the excluded pixels' share of the sum is
        subtracted, all plain SIMD reductions instead of masked ones.
        """
        info = np.iinfo(values.dtype)
        if excluded != info.max:
            self.add(values, include=values != excluded, valid=valid, masked=masked, nodata=nodata)
            return
        self.valid += valid
        self.masked += masked
        self.nodata += nodata
        counted = int(np.count_nonzero(values != excluded)) if included is None else included
        if counted:
            total, low, high = _sum_min_max_below_top(values)
            self._min = low if self._min is None else min(self._min, low)
            self._max = high if self._max is None else max(self._max, high)
            self._sum += float(total - excluded * (values.size - counted))
            self._count += counted

    def result(self, scale: float) -> RasterStats:
        """Statistics with values multiplied by ``scale`` (physical units)."""
        return RasterStats(
            valid_pixels=self.valid,
            masked_pixels=self.masked,
            nodata_pixels=self.nodata,
            minimum=None if self._min is None else self._min * scale,
            maximum=None if self._max is None else self._max * scale,
            mean=self._sum / self._count * scale if self._count else None,
        )


# Pixels per block of the statistics: a block of int16 stays in a core's cache while the
# sum, minimum and shifted maximum read it.
STATS_BLOCK_PIXELS = 1 << 17


def _sum_min_max_below_top(values: NDArray[np.integer]) -> tuple[int, int, int]:
    """Sum and minimum of all ``values``, and their maximum leaving out the dtype's
    maximum (meaningless when every value is the dtype's maximum).

    A wrapping ``+ 1`` turns the dtype's maximum into its minimum for the maximum. Rows
    are summed in int32 when no row can overflow it (10980 int16 values sum to less than
    2**29), then the row sums in int64: the same integer as one int64 sum, with a cheaper
    cast. All a few rows at a time, each block read from the cache by the three passes.
    """
    info = np.iinfo(values.dtype)
    rows = values.reshape(len(values), -1) if values.ndim else values.reshape(1, 1)
    width = rows.shape[1]
    narrow = width * max(-info.min, info.max) < 2**31
    step = max(1, STATS_BLOCK_PIXELS // max(1, width))
    shifted = np.empty((min(step, len(rows)), width), dtype=values.dtype)
    one = values.dtype.type(1)
    total, low, high = 0, int(info.max), int(info.min)
    for first in range(0, len(rows), step):
        block = rows[first : first + step]
        if narrow:
            total += int(block.sum(axis=1, dtype=np.int32).sum(dtype=np.int64))
        else:
            total += int(block.sum(dtype=np.int64))
        low = min(low, int(block.min()))
        top = np.add(block, one, out=shifted[: len(block)])  # wraps: excluded -> minimum
        high = max(high, int(top.max()))
    return total, low, high - 1


class OutputFile:
    """A mask or index file being written strip by strip, published atomically."""

    def __init__(
        self,
        path: Path,
        grid: Grid,
        *,
        kind: str,
        name: str,
        mask_spec: str | None,
        dtype: str,
        nodata: int,
        output: OutputFormat,
        scale: float = 1.0,
    ) -> None:
        self.kind, self.name, self.mask_spec = kind, name, mask_spec
        self.nodata = nodata
        self.scale = scale
        self.stats = StatsAccumulator()
        self.sampler = Sampler(grid.height, grid.width)
        self.writer = RasterWriter(
            path,
            grid,
            dtype=dtype,
            nodata=nodata,
            output=output,
            scale=scale if kind == "index" else None,
        )

    def write(
        self,
        start: int,
        stored: NDArray[np.integer],
        variants: Sequence[tuple[OutputFile, NDArray[np.integer]]] = (),
    ) -> None:
        """Write a strip of stored values starting at row ``start``; ``variants`` are
        files of the same grid (masked variants) and their values for the same strip,
        compressed together (:meth:`RasterWriter.write_rows`)."""
        self.writer.write_rows(start, stored, [(file.writer, values) for file, values in variants])

    def publish(self, ramp: str | None, record: Recorder | None = None) -> WrittenRaster:
        """Encode and rename the file into place; describe what was written.

        ``record`` gets the description and the encoded file before the rename (see
        :data:`~s2_assets.raster.types.Recorder`).
        """
        described: list[WrittenRaster] = []

        def before_rename(encoded: Path) -> None:
            written = WrittenRaster(
                path=self.writer.path,
                kind=self.kind,
                name=self.name,
                mask_spec=self.mask_spec,
                size_bytes=encoded.stat().st_size,
                statistics=self.stats.result(self.scale),
                quicklook_png=self.sampler.png(ramp),
            )
            if record is not None:
                record(written, encoded)
            described.append(written)

        self.writer.publish(before_rename)
        return described[0]

    def discard(self) -> None:
        """Remove every temporary file of this output."""
        self.writer.discard()
