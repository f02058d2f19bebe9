"""What one tick of an extraction job runs: per enabled row, mask and tile the polygons
touch, one ``timeseries`` run and its config. Pure: no Dagster.

The tiles a row's polygons touch are found in the library: a tile counts when a file of one
of the row's indices exists for it and that file's footprint (read from its header)
intersects a polygon. A tile with no index file yet has nothing to extract, so it is not
asked for; it is asked for on a later tick once its indices exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import shapely
from rasterio.warp import transform_geom

from s2_assets.jobs.extraction_file import ExtractionJob, ExtractionTask
from s2_assets.library.tree import Library
from s2_assets.outputs.polygons import Polygons, read_polygons
from s2_assets.outputs.stac_raster import CatalogError, footprint, read_raster_info
from s2_assets.outputs.timeseries import RASTER_SUFFIXES


def tile_footprints(library: Library, index: str) -> dict[str, shapely.Geometry]:
    """Each tile of ``index`` in the library: the WGS84 footprint of one of its files."""
    root = library.index_dir(index, "_", "_").parent.parent
    found: dict[str, shapely.Geometry] = {}
    for tile_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        files = (f for f in sorted(tile_dir.glob("*/*")) if f.suffix in RASTER_SUFFIXES)
        for path in files:
            try:
                found[tile_dir.name] = shapely.geometry.shape(footprint(read_raster_info(path)))
                break
            except CatalogError:
                continue  # an unreadable file: try the tile's next one
    return found


def tiles_touching(library: Library, polygons: Polygons, indices: tuple[str, ...]) -> list[str]:
    """The library's tiles of ``indices`` whose footprint intersects one of the polygons."""
    shapes = shapely.union_all(
        [
            shapely.geometry.shape(dict(transform_geom(polygons.crs, "EPSG:4326", f.geometry)))
            for f in polygons.features
        ]
    )
    tiles: set[str] = set()
    for index in indices:
        tiles |= {
            t for t, shape in tile_footprints(library, index).items() if shape.intersects(shapes)
        }
    return sorted(tiles)


@dataclass(frozen=True)
class PlannedRun:
    """One ``timeseries`` run: a row, one of its masks, one tile, and the asset's config."""

    task: ExtractionTask
    mask: str | None
    tile: str
    config: dict[str, Any]

    @property
    def key(self) -> str:
        return f"line{self.task.line}:{self.mask or 'RAW'}:{self.tile}"


def run_config(task: ExtractionTask, mask: str | None, today: date, root: Path) -> dict[str, Any]:
    """The ``timeseries`` config of one row and mask on ``today``. The window's ends are in
    the output names: an empty ``date_max`` stays 9999-12-31, so each tick adds to the same
    files, while ``today`` names a new file each day, as in sen2chain."""
    start, end = task.date_min.resolve(today), task.date_max.resolve(today)
    vector = task.vector
    return {
        "vector": str(vector.relative_to(root)) if vector.is_relative_to(root) else str(vector),
        "indices": list(task.indices),
        "date_min": start.isoformat(),
        "date_max": end.isoformat(),
        "max_cloud": float(task.max_clouds),
        "mask": mask or "",
        "plots": False,
        "smooth": task.smooth_data,
        "compiled": list(task.compiled_data),
        "force": task.force_extraction,
    }


def plan(job: ExtractionJob, library: Library, today: date) -> list[PlannedRun]:
    """Every run one tick of ``job`` launches (the vector files are read again: they may
    have changed since the code location loaded).

    Raises:
        TimeSeriesError: a row's vector file cannot be read.
    """
    runs = []
    for task in job.enabled_tasks:
        polygons = read_polygons(task.vector)
        for tile in tiles_touching(library, polygons, task.indices):
            for mask in task.masks:
                runs.append(
                    PlannedRun(task, mask, tile, run_config(task, mask, today, library.root))
                )
    return runs
