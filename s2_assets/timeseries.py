"""sen2chain's time-series extraction: zonal statistics of a masked index per polygon and date.

For each polygon of a vector file (GeoJSON or GeoPackage, any CRS: reprojected to each
raster's CRS) and each index product of a tile whose date and scene cloud cover pass the
request, statistics over the pixels whose centre lies in the polygon (rasterstats' rule),
on stored int16 values, as sen2chain computes them:

- ``count`` valid pixels of the masked index, ``nodata`` its pixels without a value (no data,
  masked, or beyond the raster's edge, as rasterstats' boundless read counts them);
- ``nbcld`` = nodata(masked) - nodata(raw): the pixels the cloud mask hid;
- ``cldprb`` the mean cloud probability (``MSK_CLDPRB_20m``, 20 m grid) in the polygon;
- ``min``, ``max``, ``mean``, ``std`` (population), ``median``, ``percentile_25``,
  ``percentile_75`` (linear interpolation), then the feature's attributes.

Rows without valid pixels are dropped. One CSV per index has sen2chain's columns; rows are
sorted by fid, date, count (ascending) and std (descending) and de-duplicated on
(date, fid) keeping the last: a polygon seen by two tiles on the same date keeps the tile
with the higher count. Only the windows around the polygons are read. Pure: no Dagster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import io
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyogrio.errors
import pyogrio.raw
import rasterio
import shapely
from affine import Affine
from numpy.typing import NDArray
from rasterio.errors import RasterioError
from rasterio.features import geometry_mask
from rasterio.warp import transform_geom
from rasterio.windows import Window

from s2_assets.errors import S2AssetsError
from s2_assets.library import Library
from s2_assets.products import ProductName, qi_path, read_metadata

STAT_COLUMNS = (
    "count", "nodata", "nbcld", "cldprb", "min", "max", "mean", "std", "median",
    "percentile_25", "percentile_75",
)  # fmt: skip
CSV_COLUMNS = ("date", "fid", "tile", "filename", *STAT_COLUMNS)
POLYGON_TYPES = ("Polygon", "MultiPolygon")
RASTER_SUFFIXES = (".tif", ".jp2")
CLOUD_PROBABILITY = "MSK_CLDPRB_20m.jp2"
STORED_SCALE = 1e-4  # every index is stored x 10000 (ratios) or in reflectance DN units


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

    def in_crs(self, crs_wkt: str) -> list[dict[str, Any]]:
        """Every feature's geometry in ``crs_wkt`` (computed once per CRS)."""
        if crs_wkt not in self._reprojected:
            self._reprojected[crs_wkt] = [
                dict(transform_geom(self.crs, crs_wkt, f.geometry)) for f in self.features
            ]
        return self._reprojected[crs_wkt]


def _plain(value: Any) -> Any:
    """Numpy scalars as Python values, so attributes reach the CSV as written."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_polygons(path: Path, *, layer: str | None = None, id_field: str | None = None) -> Polygons:
    """Read the polygons of a GeoJSON or GeoPackage file.

    ``fid`` is the value of ``id_field`` when given, else the feature's position (0, 1, …).

    Raises:
        TimeSeriesError: naming the file (and feature) when the file is unreadable, has no
            CRS, lacks ``id_field``, or holds a feature that is not a polygon.
    """
    where = f"vector file {path}"
    if not path.is_file():
        raise TimeSeriesError(f"{where}: no such file (expected a .geojson or .gpkg file)")
    try:
        meta, _, geometries, columns = pyogrio.raw.read(
            path, layer=layer or None, force_2d=True, datetime_as_string=True
        )
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
        raise TimeSeriesError(
            f"{where}: unreadable ({exc}); valid: GeoJSON or GeoPackage"
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
        attributes = {name: _plain(columns[i][position]) for i, name in enumerate(names)}
        fid = attributes[id_field] if id_field else position
        features.append(Feature(fid, shapely.geometry.mapping(geometry), attributes))
    return Polygons(path, str(meta["crs"]), tuple(features), names)


# ------------------------------------------------------------------------ zonal statistics


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
        min=_plain(picked.min()),
        max=_plain(picked.max()),
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
        raise TimeSeriesError(f"rotated raster grids are not supported (transform {transform})")
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
                "date": product.l2a.sensing.replace(tzinfo=None),
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


# ---------------------------------------------------------------------------------- output


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Serialise the merges of one extraction folder (tiles may run at the same time)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def series_name(stem: str, index: str, date_min: date, date_max: date) -> str:
    """sen2chain's ``<vector stem>_<INDEX>_<date_min>_<date_max>``."""
    return f"{stem}_{index}_{date_min.isoformat()}_{date_max.isoformat()}"


def publish_tile(out_dir: Path, name: str, tile: str, rows: pd.DataFrame) -> pd.DataFrame:
    """Store one tile's rows and rewrite ``<out_dir>/<name>.csv`` from every tile's rows.

    Each tile's rows are kept in ``<out_dir>/tiles/<name>_<tile>.parquet`` (replaced on a
    re-run); the CSV is the de-duplicated union of them. Returns the merged table.
    """
    part = out_dir / "tiles" / f"{name}_{tile}.parquet"
    buffer = io.BytesIO()
    rows.to_parquet(buffer, index=False)
    with _locked(out_dir):
        _atomic_write(part, buffer.getvalue())
        parts = [pd.read_parquet(p) for p in sorted(part.parent.glob(f"{name}_?????.parquet"))]
        merged = deduplicate(pd.concat([p for p in parts if len(p)] or [rows], ignore_index=True))
        text = merged.to_csv(index=False, date_format="%Y-%m-%d %H:%M:%S")
        _atomic_write(out_dir / f"{name}.csv", text.encode())
    return merged


class SeriesPlotter:
    """Draws series plots on one reused figure: mean (x 0.0001) over time and the
    interquartile band. Reusing the figure saves a third of the ~0.2 s a plot costs."""

    def __init__(self, *, small: bool = False) -> None:
        # Imported here: matplotlib costs ~0.5 s to import and only runs that plot need it.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4.0, 2.2) if small else (6.0, 3.0), dpi=72 if small else 90)
        FigureCanvasAgg(self.figure)
        self.axes = self.figure.add_subplot()

    def png(self, series: pd.DataFrame, *, title: str, ylabel: str) -> bytes:
        axes = self.axes
        axes.cla()
        ordered = series.sort_values("date")
        dates = pd.to_datetime(ordered["date"])
        low, high = ordered["percentile_25"], ordered["percentile_75"]
        axes.fill_between(
            dates, low * STORED_SCALE, high * STORED_SCALE, alpha=0.3, label="25-75 %"
        )
        axes.plot(dates, ordered["mean"] * STORED_SCALE, marker="o", markersize=3, label="mean")
        axes.set_title(title, fontsize=9)
        axes.set_ylabel(ylabel)
        axes.legend(fontsize=7, loc="upper left")  # "best" would search every point: slow
        axes.grid(alpha=0.3)
        self.figure.autofmt_xdate()
        out = io.BytesIO()
        self.figure.savefig(out, format="png")
        return out.getvalue()


def write_plots(
    merged: pd.DataFrame, out_dir: Path, name: str, *, index: str, fids: Sequence[Any]
) -> list[Path]:
    """``<out_dir>/plots/<name>_fid<fid>.png`` for each of ``fids`` with rows."""
    written = []
    plotter = SeriesPlotter()
    for fid in fids:
        series = merged[merged["fid"] == fid]
        if series.empty:
            continue
        path = out_dir / "plots" / f"{name}_fid{fid}.png"
        _atomic_write(path, plotter.png(series, title=f"{name} · fid {fid}", ylabel=index))
        written.append(path)
    return written


@dataclass(frozen=True)
class ExtractionRequest:
    """What to extract: polygons, indices, a date window, a cloud limit and a mask spec
    (None: the raw index, with ``nbcld`` 0); ``plots`` writes a PNG per polygon and index
    (about 0.2 s each)."""

    polygons: Polygons
    indices: tuple[str, ...]
    date_min: date
    date_max: date
    max_cloud: float
    mask: str | None
    plots: bool = True


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


def extraction_dir(library: Library, stem: str) -> Path:
    """sen2chain's ``data/EXTRACTION/<vector stem>``."""
    return library.root / "data" / "EXTRACTION" / stem


def extract_tile(library: Library, request: ExtractionRequest, tile: str) -> list[IndexSeries]:
    """Extract every requested index of ``tile``, merge into the CSVs and redraw the plots
    of the polygons this tile sees."""
    out_dir = extraction_dir(library, request.polygons.stem)
    results = []
    for index in request.indices:
        products = find_products(
            library, tile=tile, index=index, mask=request.mask, date_min=request.date_min,
            date_max=request.date_max, max_cloud=request.max_cloud,
        )  # fmt: skip
        rows = extract(request.polygons, products, tile=tile)
        name = series_name(request.polygons.stem, index, request.date_min, request.date_max)
        merged = publish_tile(out_dir, name, tile, rows)
        fids = list(dict.fromkeys(rows["fid"]))
        plots = write_plots(merged, out_dir, name, index=index, fids=fids) if request.plots else []
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
