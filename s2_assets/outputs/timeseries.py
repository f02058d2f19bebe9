"""sen2chain's time-series extraction: zonal statistics of a masked index per polygon and date.

For each polygon of a vector file (Shapefile, GeoPackage or GeoJSON, any CRS: reprojected
to each raster's CRS; read by :mod:`s2_assets.outputs.polygons`) and each index product of a
tile whose date and scene cloud cover pass the request, statistics over the pixels whose
centre lies in the polygon (rasterstats' rule, :mod:`s2_assets.outputs.zonal`), on stored
int16 values, as sen2chain computes them:

- ``count`` valid pixels of the masked index, ``nodata`` its pixels without a value (no data,
  masked, or beyond the raster's edge, as rasterstats' boundless read counts them);
- ``nbcld`` = nodata(masked) - nodata(raw): the pixels the cloud mask hid;
- ``cldprb`` the mean cloud probability (``MSK_CLDPRB_20m``, 20 m grid) of the polygon's
  pixels inside the raster (beyond the edge there is no probability to average);
- ``min``, ``max``, ``mean``, ``std`` (population), ``median``, ``percentile_25``,
  ``percentile_75`` (linear interpolation), then the feature's attributes.

``date`` is the acquisition time (:func:`s2_assets.products.acquisition_time`). Rows without
valid pixels are dropped. Rows are sorted by fid, date, count (ascending) and std
(descending) and de-duplicated on (date, fid) keeping the last: a polygon seen by two tiles
on the same date keeps the tile with the higher count. Only the windows around the polygons
are read. The files written are :mod:`s2_assets.outputs.timeseries_files`'. Pure: no Dagster.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
from affine import Affine
from numpy.typing import NDArray
from rasterio.errors import RasterioError

from s2_assets.errors import S2AssetsError
from s2_assets.library.tree import Library
from s2_assets.outputs.polygons import Polygons, TimeSeriesError
from s2_assets.outputs.timeseries_files import (
    STATISTICS,
    SeriesOptions,
    SeriesPlotter,
    publish_tile,
    series_name,
    stored_tile_rows,
    write_plots,
)
from s2_assets.outputs.zonal import Zone, read_zone, zone_on_grid, zone_stats
from s2_assets.products import ProductName, acquisition_time, qi_path, read_metadata

STAT_COLUMNS = STATISTICS
CSV_COLUMNS = ("date", "fid", "tile", "filename", *STAT_COLUMNS)
RASTER_SUFFIXES = (".tif", ".jp2")
CLOUD_PROBABILITY = "MSK_CLDPRB_20m.jp2"


# ------------------------------------------------------------------------------ products


@dataclass(frozen=True)
class IndexProduct:
    """The files one extraction row reads for one L2A product."""

    l2a: ProductName
    cloud_cover: float | None
    index_file: Path
    raw_file: Path | None
    cldprb_file: Path | None
    masked: bool = True


def _raster(folder: Path, stem: str) -> Path | None:
    for suffix in RASTER_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def find_products(
    library: Library,
    *,
    tile: str,
    index: str,
    mask: str | None,
    date_min: date,
    date_max: date,
    max_cloud: float,
) -> list[IndexProduct]:
    """The index products of ``tile`` in the date window (inclusive) whose scene cloud cover
    is at most ``max_cloud`` (unknown cover kept: the L2A may have been removed), that have
    the ``mask`` variant (the raw index when ``mask`` is None), sorted by sensing time."""
    folder = library.index_dir(index, tile, "_").parent
    found = []
    for product_dir in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            l2a = ProductName.parse(product_dir.name)
        except S2AssetsError:
            continue
        if not date_min <= l2a.date <= date_max:
            continue
        raw = _raster(product_dir, f"{l2a.id}_{index}")
        chosen = _raster(product_dir, f"{l2a.id}_{index}_{mask}") if mask else raw
        if chosen is None:
            continue
        safe = library.product_path(l2a)
        cloud, cldprb = None, library.mask_dir(tile, l2a.id) / CLOUD_PROBABILITY
        if safe.is_dir():
            with contextlib.suppress(S2AssetsError):
                cloud = read_metadata(safe).cloud_cover
                cldprb = qi_path(safe, CLOUD_PROBABILITY)
        if cloud is not None and cloud > max_cloud:
            continue
        cldprb_file = cldprb if cldprb.is_file() else None
        found.append(IndexProduct(l2a, cloud, chosen, raw, cldprb_file, masked=bool(mask)))
    return sorted(found, key=lambda p: (p.l2a.sensing, p.l2a.id))


def _missing(src: Any, values: NDArray[Any], in_raster: NDArray[np.bool_]) -> NDArray[np.bool_]:
    missing = ~in_raster
    if src.nodata is not None:
        missing |= values == src.nodata
    return missing


def extract(polygons: Polygons, products: Sequence[IndexProduct], *, tile: str) -> pd.DataFrame:
    """One row per (product, polygon) with valid pixels, in :data:`CSV_COLUMNS` order then
    the attributes (an attribute named like a column gets the suffix ``_attr``)."""
    zones: dict[tuple[str, Affine], list[Zone]] = {}

    def zones_of(src: Any) -> list[Zone]:
        crs = src.crs.to_wkt() if src.crs is not None else ""
        if not crs:
            raise TimeSeriesError(f"{src.name}: raster without a CRS")
        key = (crs, src.transform)
        if key not in zones:
            zones[key] = [zone_on_grid(g, src.transform) for g in polygons.in_crs(crs)]
        return zones[key]

    rows: list[dict[str, Any]] = []
    for product in products:
        try:
            with contextlib.ExitStack() as stack:

                def open_(path: Path | None) -> Any:
                    return stack.enter_context(rasterio.open(path)) if path else None

                src, prb = open_(product.index_file), open_(product.cldprb_file)
                raw = open_(product.raw_file) if product.masked else None
                rows += _product_rows(polygons, product, src, raw, prb, zones_of, tile)
        except RasterioError as exc:
            raise TimeSeriesError(
                f"{product.index_file.parent}: unreadable raster ({exc})"
            ) from exc
    return _frame(rows, polygons.attribute_names)


def _product_rows(
    polygons: Polygons,
    product: IndexProduct,
    src: Any,
    raw: Any,
    prb: Any,
    zones_of: Callable[[Any], list[Zone]],
    tile: str,
) -> list[dict[str, Any]]:
    rows = []
    prb_zones = zones_of(prb) if prb is not None else None
    for position, (feature, zone) in enumerate(zip(polygons.features, zones_of(src), strict=True)):
        values, in_raster = read_zone(src, zone, fill=src.nodata or 0)
        if not in_raster.any():
            continue  # the polygon is beyond this tile
        stats = zone_stats(values, inside=zone.inside, missing=_missing(src, values, in_raster))
        if not stats.count:
            continue
        # Without a mask nothing is hidden; with one but no raw index, it cannot be told.
        nbcld: int | None = None if product.masked else 0
        if raw is not None:
            raw_values, raw_in = read_zone(raw, zone, fill=raw.nodata or 0)
            raw_missing = _missing(raw, raw_values, raw_in)
            nbcld = stats.nodata - int(np.count_nonzero(zone.inside & raw_missing))
        cldprb = None
        if prb_zones is not None:
            prb_zone = prb_zones[position]
            prb_values, prb_in = read_zone(prb, prb_zone, fill=0)
            prb_stats = zone_stats(
                prb_values, inside=prb_zone.inside, missing=_missing(prb, prb_values, prb_in)
            )
            cldprb = prb_stats.mean
        rows.append(
            {
                "date": acquisition_time(product.l2a).replace(tzinfo=None),
                "fid": feature.fid,
                "tile": tile,
                "filename": product.index_file.name,
                **dataclasses.asdict(stats),
                "nbcld": nbcld,
                "cldprb": cldprb,
                **{_attribute_column(k): v for k, v in feature.attributes.items()},
            }
        )
    return rows


def _attribute_column(name: str) -> str:
    return f"{name}_attr" if name in CSV_COLUMNS else name


def _frame(rows: list[dict[str, Any]], attribute_names: Sequence[str]) -> pd.DataFrame:
    columns = [*CSV_COLUMNS, *(_attribute_column(n) for n in attribute_names)]
    return pd.DataFrame(rows, columns=columns)


def deduplicate(frame: pd.DataFrame) -> pd.DataFrame:
    """sen2chain's rule: sort by fid, date, count (ascending) and std (descending), keep the
    last row of each (date, fid): the tile that sees more of the polygon wins."""
    ordered = frame.sort_values(
        ["fid", "date", "count", "std"], ascending=[True, True, True, False], kind="mergesort"
    )
    return ordered.drop_duplicates(["date", "fid"], keep="last").reset_index(drop=True)


@dataclass(frozen=True)
class ExtractionRequest:
    """What to extract: polygons, indices, a date window, a cloud limit and a mask spec
    (None: the raw index, with ``nbcld`` 0); ``options`` what to write besides the CSV and
    NetCDF; ``force`` re-reads products a previous run of the same extraction already read
    (sen2chain's ``force_extraction``; without it only new products are read)."""

    polygons: Polygons
    indices: tuple[str, ...]
    date_min: date
    date_max: date
    max_cloud: float
    mask: str | None
    plots: bool = True
    options: SeriesOptions | None = None
    force: bool = True

    @property
    def series_options(self) -> SeriesOptions:
        if self.options is not None:
            return dataclasses.replace(self.options, plots=self.plots and self.options.plots)
        return SeriesOptions(plots=self.plots)


@dataclass(frozen=True)
class IndexSeries:
    """What one tile's extraction of one index produced."""

    index: str
    csv: Path
    products: int
    tile_rows: int
    total_rows: int
    plots: tuple[Path, ...]
    preview_png: bytes | None = None  # a small plot of the first polygon, for the UI

    @property
    def netcdf(self) -> Path:
        return self.csv.with_suffix(".nc")


def extraction_dir(library: Library, source: str) -> Path:
    """``data/EXTRACTION/<source>``: sen2chain's folder, named by :func:`source_name`."""
    return library.root / "data" / "EXTRACTION" / source


def extract_tile(library: Library, request: ExtractionRequest, tile: str) -> list[IndexSeries]:
    """Extract every requested index of ``tile``, merge into the CSVs and NetCDFs and redraw
    the plots of the polygons this tile sees."""
    out_dir = extraction_dir(library, request.polygons.source)
    options = request.series_options
    attributes = [_attribute_column(n) for n in request.polygons.attribute_names]
    results = []
    for index in request.indices:
        name = series_name(
            request.polygons.source, index, request.mask, request.date_min, request.date_max
        )
        products = find_products(
            library, tile=tile, index=index, mask=request.mask, date_min=request.date_min,
            date_max=request.date_max, max_cloud=request.max_cloud,
        )  # fmt: skip
        stored = None if request.force else stored_tile_rows(out_dir, name, tile)
        if stored is not None and len(stored):
            seen = set(stored["filename"])
            products = [p for p in products if p.index_file.name not in seen]
        rows = extract(request.polygons, products, tile=tile)
        if stored is not None and len(stored):
            rows = pd.concat([stored, rows], ignore_index=True) if len(rows) else stored
        merged = publish_tile(
            out_dir, name, tile, rows, attribute_columns=attributes, options=options
        )
        fids = list(dict.fromkeys(rows["fid"]))
        plots = write_plots(merged, out_dir, name, index=index, fids=fids) if options.plots else []
        preview = None
        if fids:
            first = merged[merged["fid"] == fids[0]]
            preview = SeriesPlotter(small=True).png(
                first, title=f"{index} · fid {fids[0]}", ylabel=index
            )
        results.append(
            IndexSeries(
                index,
                out_dir / f"{name}.csv",
                len(products),
                len(rows),
                len(merged),
                tuple(plots),
                preview,
            )
        )
    return results
