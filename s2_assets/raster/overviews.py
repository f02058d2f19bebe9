"""Nearest-neighbour COG overview levels built while strips stream. Pure numpy.

GDAL's COG driver, given a source without overviews, decodes the whole image again to
build them, compresses them into a temporary file, then decompresses and compresses
them a second time into the COG. With ``OVERVIEW_RESAMPLING=NEAREST`` the levels are
plain decimations, so we build them strip by strip instead and hand them to the driver as
the source's own overviews, which it copies as they are. For the result to be the same
file byte for byte, the levels must be exactly the driver's:

- sizes: halve width and height (rounding down) while either is above the block size;
- pixels: each level is taken from the previous one, destination pixel ``i`` reading
  source pixel ``floor(0.5 + i * source_size / level_size)`` on each axis (GDAL's
  nearest-neighbour downsampling).

Composing the per-level picks gives, for each level, which full-resolution rows and
columns it keeps; a strip of full-resolution rows then yields the level rows it covers.
``s2_assets_tests/raster/test_overviews.py`` checks both rules against GDAL's own COGs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Level:
    """One overview level: which full-resolution rows and columns it keeps, in order."""

    rows: NDArray[np.int64]
    cols: NDArray[np.int64]

    @property
    def height(self) -> int:
        return len(self.rows)

    @property
    def width(self) -> int:
        return len(self.cols)

    def rows_in(self, start: int, stop: int) -> tuple[int, int]:
        """The level rows ``first``..``last`` (exclusive) taken from full rows start..stop."""
        first, last = np.searchsorted(self.rows, (start, stop))
        return int(first), int(last)

    def take(self, start: int, strip: NDArray[Any]) -> tuple[int, NDArray[Any]]:
        """From a full-resolution strip starting at row ``start``: the level row its
        picked rows start at, and those rows decimated (possibly none)."""
        first, last = self.rows_in(start, start + strip.shape[0])
        step = self._row_step
        if step and last > first:  # evenly spaced rows: a strided view, no copy
            offset = int(self.rows[first]) - start
            rows: slice | NDArray[np.int64] = slice(
                offset, offset + step * (last - first - 1) + 1, step
            )
        else:
            rows = self.rows[first:last] - start
        return first, strip[rows][:, self._col_index]

    @functools.cached_property
    def _row_step(self) -> int | None:
        index = _index(self.rows)
        return index.step if isinstance(index, slice) else None

    @functools.cached_property
    def _col_index(self) -> slice | NDArray[np.int64]:
        return _index(self.cols)


def _index(picks: NDArray[np.int64]) -> slice | NDArray[np.int64]:
    """A slice when the picks are evenly spaced (the exact halvings, a strided view, no
    copy), else the picks themselves."""
    if len(picks) < 2:
        return picks
    step = int(picks[1] - picks[0])
    evenly = step > 0 and int(picks[-1]) == int(picks[0]) + step * (len(picks) - 1)
    if evenly and bool(np.all(np.diff(picks) == step)):
        return slice(int(picks[0]), int(picks[-1]) + 1, step)
    return picks


def _pick(source: int, size: int) -> NDArray[np.int64]:
    # GDAL computes the source offset in double precision, as numpy does here.
    ratio = source / size
    return np.floor(0.5 + np.arange(size, dtype=np.float64) * ratio).astype(np.int64)


def cog_levels(width: int, height: int, *, block: int) -> list[Level] | None:
    """The nearest-neighbour overview levels GDAL's COG driver makes for this size, or
    None for a strip so thin that a level would have no pixels (left to GDAL)."""
    levels: list[Level] = []
    rows = np.arange(height, dtype=np.int64)
    cols = np.arange(width, dtype=np.int64)
    while width > block or height > block:
        small_width, small_height = width // 2, height // 2
        if small_width < 1 or small_height < 1:
            return None
        rows = rows[_pick(height, small_height)]
        cols = cols[_pick(width, small_width)]
        levels.append(Level(rows=rows, cols=cols))
        width, height = small_width, small_height
    return levels
