"""Zonal statistics of one polygon on one raster grid, reading only the window around it.

The pixels of a polygon are those whose centre it covers (rasterstats' rule), found by
rasterizing it over its pixel box, which may pass the raster's edges: there the box is
filled and the cells count as missing. Statistics are on stored values. Pure: no Dagster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from affine import Affine
from numpy.typing import NDArray
from rasterio.features import geometry_mask
from rasterio.windows import Window

from s2_assets.errors import S2AssetsError


class ZoneError(S2AssetsError, ValueError):
    """A raster grid we cannot place polygons on."""


def plain(value: Any) -> Any:
    """Numpy scalars as Python values, so they reach the CSV as written."""
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True)
class ZoneStats:
    """Statistics of one polygon on one raster (stored values)."""

    count: int
    nodata: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    median: float | None = None
    percentile_25: float | None = None
    percentile_75: float | None = None


def zone_stats(
    values: NDArray[Any], *, inside: NDArray[np.bool_], missing: NDArray[np.bool_]
) -> ZoneStats:
    """Statistics of ``values`` over the ``inside`` pixels that are not ``missing``."""
    picked = values[inside & ~missing]
    nodata = int(np.count_nonzero(inside & missing))
    if not picked.size:
        return ZoneStats(count=0, nodata=nodata)
    as_float = picked.astype(np.float64)
    low, middle, high = np.percentile(as_float, [25, 50, 75])
    return ZoneStats(
        count=int(picked.size),
        nodata=nodata,
        min=plain(picked.min()),
        max=plain(picked.max()),
        mean=float(as_float.mean()),
        std=float(as_float.std()),
        median=float(middle),
        percentile_25=float(low),
        percentile_75=float(high),
    )


@dataclass(frozen=True)
class Zone:
    """A polygon on a raster grid: its pixel box (may pass the edges) and the pixels whose
    centre it covers."""

    row: int
    col: int
    inside: NDArray[np.bool_]


def _snap(pixel: float) -> float:
    nearest = round(pixel)
    return float(nearest) if abs(pixel - nearest) < 1e-6 else pixel


def zone_on_grid(geometry: dict[str, Any], transform: Affine) -> Zone:
    """Rasterize ``geometry`` (in the grid's CRS) over the pixel box around it."""
    if transform.b or transform.d:
        raise ZoneError(f"rotated raster grids are not supported (transform {transform})")
    minx, miny, maxx, maxy = shapely.bounds(shapely.geometry.shape(geometry))
    # Pixel coordinates of two opposite corners; the box is every pixel they touch. Edges
    # within a micro-pixel of a pixel edge (drawn on it, then reprojected) count as on it.
    left, top = (_snap(v) for v in ~transform * (minx, maxy))
    right, bottom = (_snap(v) for v in ~transform * (maxx, miny))
    col0 = math.floor(min(left, right))
    col1 = max(math.ceil(max(left, right)), col0 + 1)
    row0 = math.floor(min(top, bottom))
    row1 = max(math.ceil(max(top, bottom)), row0 + 1)
    inside = geometry_mask(
        [geometry],
        out_shape=(row1 - row0, col1 - col0),
        transform=transform * Affine.translation(col0, row0),
        invert=True,
        all_touched=False,
    )
    return Zone(row0, col0, np.asarray(inside, dtype=bool))


def read_window(src: Any, window: Window) -> NDArray[Any]:
    """One window of band 1 at native resolution (the only pixel read of this module)."""
    return np.asarray(src.read(1, window=window))


def read_zone(src: Any, zone: Zone, *, fill: float) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """The zone's box of ``src`` (``fill`` beyond the edges) and where the raster has pixels.

    Returns an empty ``in_raster`` (all False) when the box misses the raster entirely.
    """
    height, width = zone.inside.shape
    values = np.full((height, width), fill, dtype=src.dtypes[0])
    in_raster = np.zeros((height, width), dtype=bool)
    r0, r1 = max(zone.row, 0), min(zone.row + height, src.height)
    c0, c1 = max(zone.col, 0), min(zone.col + width, src.width)
    if r0 < r1 and c0 < c1:
        window = Window(c0, r0, c1 - c0, r1 - r0)
        inner = (slice(r0 - zone.row, r1 - zone.row), slice(c0 - zone.col, c1 - zone.col))
        values[inner] = read_window(src, window)
        in_raster[inner] = True
    return values, in_raster
