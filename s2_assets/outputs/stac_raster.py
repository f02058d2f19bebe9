"""What a STAC raster asset says about its file, so loaders read it right. Pure: no Dagster.

Every raster asset of the catalogue carries, read from the file's own header:

- ``proj:shape`` and ``proj:transform`` (projection extension), so a loader knows the grid
  without opening the file;
- STAC 1.1's ``data_type`` and ``nodata``, and the same with ``scale``, ``offset``, ``unit``
  and ``spatial_resolution`` in ``raster:bands`` (raster extension v1.1.0), which odc-stac
  reads for nodata and data type and stackstac for scale and offset.

Scale and offset come from the file header when it declares them (our index COGs do:
0.0001); a sen2chain JPEG2000 index declares none, and every index is stored x 10000, so
0.0001 stands in. The SAFE's reflectance bands declare none either: their scale is
1 / ``QUANTIFICATION_VALUE`` and their offset ``BOA_ADD_OFFSET`` / ``QUANTIFICATION_VALUE``
(0 before processing baseline 04.00), both from the product metadata.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pystac
import rasterio
from pystac.extensions.projection import ProjectionExtension
from rasterio.errors import RasterioError
from rasterio.warp import transform_geom

from s2_assets.errors import S2AssetsError

RASTER_EXTENSION = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
# Every index is stored x 10000 (ratios) or in reflectance DN units (/ 10000).
INDEX_SCALE = 1e-4
MEDIA = {".tif": pystac.MediaType.COG, ".jp2": pystac.MediaType.JPEG2000}
# Points per footprint edge: UTM edges are curved in longitude/latitude near the poles.
_EDGE_POINTS = 8
_REFLECTANCE_RE = re.compile(r"^B(\d\d|8A)(_\d+m)?$")


class CatalogError(S2AssetsError):
    """The STAC catalogue could not be built or written."""


@dataclass(frozen=True)
class RasterInfo:
    """What an item needs from a raster header (``scale``/``offset``: 1 and 0 when the
    header declares none)."""

    epsg: int | None
    shape: tuple[int, int]
    transform: tuple[float, ...]
    bounds: tuple[float, float, float, float]
    dtype: str
    nodata: float | None
    scale: float = 1.0
    offset: float = 0.0

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RasterInfo:
        """Back from ``dataclasses.asdict`` through JSON (tuples come back as lists).

        Raises:
            KeyError: an entry written before a field existed (read the header again).
        """
        return cls(
            epsg=value["epsg"],
            shape=(int(value["shape"][0]), int(value["shape"][1])),
            transform=tuple(float(v) for v in value["transform"]),
            bounds=tuple(float(v) for v in value["bounds"]),  # type: ignore[arg-type]
            dtype=str(value["dtype"]),
            nodata=value["nodata"],
            scale=float(value["scale"]),
            offset=float(value["offset"]),
        )

    @property
    def resolution(self) -> float:
        return abs(self.transform[0])


def read_raster_info(path: Path) -> RasterInfo:
    """Grid, data type, nodata, scale and offset of a raster, from its header only.

    Raises:
        CatalogError: naming the file when it cannot be opened.
    """
    try:
        with rasterio.open(path) as src:
            epsg = src.crs.to_epsg() if src.crs is not None else None
            return RasterInfo(
                epsg=epsg,
                shape=(int(src.height), int(src.width)),
                transform=tuple(float(v) for v in tuple(src.transform)[:6]),
                bounds=tuple(float(v) for v in src.bounds),  # type: ignore[arg-type]
                dtype=str(src.dtypes[0]),
                nodata=None if src.nodata is None else float(src.nodata),
                scale=float(src.scales[0]),
                offset=float(src.offsets[0]),
            )
    except RasterioError as exc:
        raise CatalogError(f"cannot read the header of {path}: {exc}") from exc


def footprint(info: RasterInfo) -> dict[str, Any]:
    """The raster's extent as a WGS84 GeoJSON polygon (edges densified)."""
    left, bottom, right, top = info.bounds
    corners = [(left, top), (right, top), (right, bottom), (left, bottom), (left, top)]
    ring: list[tuple[float, float]] = []
    for (x0, y0), (x1, y1) in itertools.pairwise(corners):
        ring += [
            (x0 + (x1 - x0) * k / _EDGE_POINTS, y0 + (y1 - y0) * k / _EDGE_POINTS)
            for k in range(_EDGE_POINTS)
        ]
    ring.append(corners[0])
    polygon = {"type": "Polygon", "coordinates": [ring]}
    if info.epsg == 4326:
        return polygon
    if info.epsg is None:
        raise CatalogError("a raster without a CRS cannot be placed on the map")
    return dict(transform_geom(f"EPSG:{info.epsg}", "EPSG:4326", polygon, precision=7))


@dataclass(frozen=True)
class BandValues:
    """How stored values become physical ones: value x scale + offset, in ``unit``."""

    nodata: float | None = None
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None


def index_values(info: RasterInfo) -> BandValues:
    """An index file: its header's scale, or 0.0001 when it declares none (sen2chain JP2)."""
    scale = info.scale if info.scale != 1.0 or info.offset != 0.0 else INDEX_SCALE
    return BandValues(nodata=info.nodata, scale=scale, offset=info.offset)


def safe_values(key: str, *, quantification: int, add_offset: int) -> BandValues:
    """A SAFE image: reflectance bands are DN / quantification with the baseline's offset;
    the cloud probability is in %; 0 is no data everywhere but the cloud probability."""
    if _REFLECTANCE_RE.match(key):
        return BandValues(nodata=0, scale=1 / quantification, offset=add_offset / quantification)
    if key.startswith("MSK_CLDPRB"):
        return BandValues(unit="%")
    return BandValues(nodata=0)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def raster_asset(
    href: str,
    info: RasterInfo,
    *,
    title: str,
    roles: list[str],
    values: BandValues | None = None,
) -> pystac.Asset:
    """A raster asset with its grid and its ``raster:bands``; ``values`` fills what the header
    does not say (its nodata stands in only when the header declares none)."""
    values = values or BandValues()
    nodata = info.nodata if info.nodata is not None else values.nodata
    scale = values.scale if info.scale == 1.0 and info.offset == 0.0 else info.scale
    offset = values.offset if info.scale == 1.0 and info.offset == 0.0 else info.offset
    band: dict[str, Any] = {"data_type": info.dtype, "spatial_resolution": info.resolution}
    if nodata is not None:
        band["nodata"] = _number(nodata)
    if scale != 1.0 or offset != 0.0:
        band |= {"scale": scale, "offset": offset}
    if values.unit:
        band["unit"] = values.unit
    extra: dict[str, Any] = {"data_type": info.dtype, "raster:bands": [band]}
    if nodata is not None:
        # STAC 1.1 common metadata: what a loader needs to mask no data.
        extra["nodata"] = _number(nodata)
    asset = pystac.Asset(
        href=href,
        media_type=MEDIA.get(Path(href).suffix.lower(), pystac.MediaType.GEOTIFF),
        title=title,
        roles=roles,
        extra_fields=extra,
    )
    projection = ProjectionExtension.ext(asset)
    projection.shape = list(info.shape)
    projection.transform = list(info.transform)
    return asset
