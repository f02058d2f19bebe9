"""Monthly composites in the STAC catalogue: one collection per index, when there are any.

``data/COMPOSITES/<INDEX>/<tile>/<YYYY-MM>/<tile>_<YYYY-MM>_<INDEX>_<SPEC>_<STAT>.tif``
become collection ``composites-<index>``, one item per tile and month
(``<tile>_<YYYY-MM>_<INDEX>``, covering the month with ``start_datetime``/``end_datetime``)
and one asset per ``<SPEC>_<STAT>``. Median, mean and max keep the index scale (0.0001);
``count`` is a plain number of observations (no scale). A library
without composites gets no such collection. Pure: no Dagster.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pystac
from pystac.extensions.mgrs import MgrsExtension
from pystac.extensions.projection import ProjectionExtension

from s2_assets.outputs.stac_raster import (
    RASTER_EXTENSION,
    BandValues,
    CatalogError,
    RasterInfo,
    footprint,
    index_values,
    raster_asset,
)

_MONTH_RE = re.compile(r"^\d{4}-\d{2}$")


def composite_collection(index: str) -> str:
    return f"composites-{index.lower()}"


def month_span(month: str) -> tuple[datetime, datetime]:
    """First and last second of ``YYYY-MM`` (UTC)."""
    year, number = (int(part) for part in month.split("-"))
    last_day = calendar.monthrange(year, number)[1]
    return (
        datetime(year, number, 1, tzinfo=UTC),
        datetime(year, number, last_day, 23, 59, 59, tzinfo=UTC),
    )


def composite_items(
    root: Path, index: str, info_of: Callable[[Path], RasterInfo | None], skipped: list[str]
) -> list[pystac.Item]:
    """The items of one index's composites under ``root`` (``data/COMPOSITES/<INDEX>``)."""
    items = []
    for tile_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        tile = tile_dir.name
        for month_dir in sorted(p for p in tile_dir.iterdir() if p.is_dir()):
            month = month_dir.name
            head = f"{tile}_{month}_{index}_"
            files = sorted(
                p
                for p in month_dir.glob(f"{head}*.tif")
                if _MONTH_RE.match(month) and not p.name.startswith(".")
            )
            infos = {p.stem[len(head) :]: (p, info) for p in files if (info := info_of(p))}
            if not infos:
                continue
            item = _item(f"{tile}_{month}_{index}", tile, month, next(iter(infos.values()))[1])
            if item is None:
                skipped.append(f"{month_dir}: its composites cannot be placed on the map")
                continue
            for key, (path, info) in infos.items():
                values = BandValues() if key.endswith("_count") else index_values(info)
                item.add_asset(
                    key, raster_asset(str(path), info, title=key, roles=["data"], values=values)
                )
            items.append(item)
    return items


def _item(item_id: str, tile: str, month: str, grid: RasterInfo) -> pystac.Item | None:
    try:
        geometry = footprint(grid)
    except CatalogError:
        return None
    xs = [p[0] for p in geometry["coordinates"][0]]
    ys = [p[1] for p in geometry["coordinates"][0]]
    start, end = month_span(month)
    item = pystac.Item(
        id=item_id,
        geometry=geometry,
        bbox=[min(xs), min(ys), max(xs), max(ys)],
        datetime=None,
        start_datetime=start,
        end_datetime=end,
        properties={"constellation": "sentinel-2", "s2:mgrs_tile": tile},
    )
    MgrsExtension.ext(item, add_if_missing=True).apply(
        latitude_band=tile[2], grid_square=tile[3:], utm_zone=int(tile[:2])
    )
    ProjectionExtension.ext(item, add_if_missing=True).apply(epsg=grid.epsg)
    item.stac_extensions.append(RASTER_EXTENSION)
    return item
