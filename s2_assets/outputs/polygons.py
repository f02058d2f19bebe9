"""The polygons of a time-series extraction: read from a vector file, reprojected on demand. Pure.

A Shapefile, GeoPackage or GeoJSON file of polygons in any CRS (read with pyogrio); each
feature keeps its id, its GeoJSON geometry and its attributes, and its geometry is
reprojected once per raster CRS it meets (:meth:`Polygons.in_crs`). Every problem names the
file, and the feature where there is one. The statistics over them are
:mod:`s2_assets.outputs.timeseries`'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyogrio.errors
import pyogrio.raw
import shapely
from rasterio.warp import transform_geom

from s2_assets.errors import S2AssetsError
from s2_assets.outputs.timeseries_files import source_name
from s2_assets.outputs.zonal import plain

POLYGON_TYPES = ("Polygon", "MultiPolygon")


class TimeSeriesError(S2AssetsError, ValueError):
    """A vector file, a raster or an extraction request we cannot work with."""


@dataclass(frozen=True)
class Feature:
    """One polygon: its id, its GeoJSON geometry in the layer's CRS, its attributes."""

    fid: Any
    geometry: dict[str, Any]
    attributes: dict[str, Any]


@dataclass
class Polygons:
    """The polygons of a vector file, and their copies reprojected to each raster CRS."""

    path: Path
    crs: str
    features: tuple[Feature, ...]
    attribute_names: tuple[str, ...]
    _reprojected: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def source(self) -> str:
        """The vector file in output names (:func:`s2_assets.outputs.timeseries_files.source_name`)."""
        return source_name(self.path)

    def in_crs(self, crs_wkt: str) -> list[dict[str, Any]]:
        """Every feature's geometry in ``crs_wkt`` (computed once per CRS)."""
        if crs_wkt not in self._reprojected:
            self._reprojected[crs_wkt] = [
                dict(transform_geom(self.crs, crs_wkt, f.geometry)) for f in self.features
            ]
        return self._reprojected[crs_wkt]


def read_polygons(path: Path, *, layer: str | None = None, id_field: str | None = None) -> Polygons:
    """Read the polygons of a Shapefile, GeoPackage or GeoJSON file.

    ``fid`` is the value of ``id_field`` when given, else the feature's position (0, 1, …).

    Raises:
        TimeSeriesError: naming the file (and feature) when the file is unreadable, has no
            CRS, lacks ``id_field``, or holds a feature that is not a polygon.
    """
    where = f"vector file {path}"
    if not path.is_file():
        raise TimeSeriesError(f"{where}: no such file (expected a .shp, .gpkg or .geojson file)")
    try:
        meta, _, geometries, columns = pyogrio.raw.read(
            path, layer=layer or None, force_2d=True, datetime_as_string=True
        )
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise TimeSeriesError(
            f"{where}: unreadable ({exc}); valid: Shapefile, GeoPackage or GeoJSON"
            + (f", layer {layer!r}" if layer else "")
        ) from exc
    if not meta.get("crs"):
        raise TimeSeriesError(f"{where}: declares no coordinate reference system")
    names = tuple(str(n) for n in meta["fields"])
    if id_field and id_field not in names:
        raise TimeSeriesError(
            f"{where}: no attribute {id_field!r} for the feature id; attributes: "
            + (", ".join(names) or "none")
        )
    features = []
    for position, wkb in enumerate(geometries):
        geometry = shapely.from_wkb(wkb) if wkb is not None else None
        if geometry is None or geometry.is_empty or geometry.geom_type not in POLYGON_TYPES:
            kind = "no geometry" if geometry is None or geometry.is_empty else geometry.geom_type
            raise TimeSeriesError(
                f"{where}: feature {position} has {kind}; valid: {', '.join(POLYGON_TYPES)}"
            )
        attributes = {name: plain(columns[i][position]) for i, name in enumerate(names)}
        fid = attributes[id_field] if id_field else position
        features.append(Feature(fid, shapely.geometry.mapping(geometry), attributes))
    return Polygons(path, str(meta["crs"]), tuple(features), names)
