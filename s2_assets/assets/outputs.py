"""``catalog`` and ``timeseries``: the outputs people use, thin glue over
``s2_assets.outputs.stac`` and ``s2_assets.outputs.timeseries``.

``catalog`` rewrites the library's static STAC catalogue (``data/STAC``) in one go;
``timeseries`` extracts zonal statistics of masked indices for a vector file of polygons,
tile by tile, into sen2chain's ``data/EXTRACTION/<source>/`` CSVs (and NetCDFs).
"""

import base64
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from s2_assets.assets.acquisitions import parse_day
from s2_assets.errors import S2AssetsError
from s2_assets.library.tree import Library
from s2_assets.outputs import timeseries as ts
from s2_assets.outputs.polygons import read_polygons
from s2_assets.outputs.smoothing import Smoothing
from s2_assets.outputs.stac import write_catalog
from s2_assets.outputs.timeseries_files import PERIODS, SeriesOptions
from s2_assets.partitions import DEFAULT_DATE_START, TILES
from s2_assets.products import validate_tile_id
from s2_assets.resources.library import LibraryResource
from s2_assets.specs import DEFAULT_MASK_SPEC, INDEX_NAMES, parse_index_name, parse_mask_spec

MAX_PREVIEWS = 3  # inline plots per partition: a few tens of KB of metadata at most


class CatalogConfig(dg.Config):
    """Attributes:
    absolute_hrefs: Also write ``data/STAC_ABSOLUTE``: absolute asset hrefs and
        ``proj:epsg``, for loaders that need them (stackstac).
    """

    absolute_hrefs: bool = False


def build_catalog_asset(upstream: Sequence[dg.AssetsDefinition]) -> dg.AssetsDefinition:
    """The ``catalog`` asset, downstream of every product asset in ``upstream``."""

    @dg.asset(deps=list(upstream), group_name="outputs", kinds={"json"})
    def catalog(
        context: dg.AssetExecutionContext, config: CatalogConfig, library: LibraryResource
    ) -> dg.MaterializeResult:
        """A static STAC catalogue of the library: L2A, cloud masks and each index."""
        started = time.monotonic()
        lib = library.library()
        try:
            summary = write_catalog(lib)
            if config.absolute_hrefs:
                absolute = write_catalog(lib, absolute=True)
                context.log.info(f"absolute-href catalogue: {absolute.path}")
        except S2AssetsError as exc:
            raise dg.Failure(str(exc)) from exc
        for reason in summary.skipped:
            context.log.warning(f"left out of the catalogue: {reason}")
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(summary.path)),
                "items": dg.MetadataValue.json(summary.items),
                "item_count": sum(summary.items.values()),
                "asset_count": summary.assets,
                "skipped": dg.MetadataValue.json(summary.skipped[:50]),
                "skipped_count": len(summary.skipped),
                "seconds": round(time.monotonic() - started, 3),
            }
        )

    return catalog


class TimeSeriesConfig(dg.Config):
    """Attributes:
    vector: Shapefile, GeoPackage or GeoJSON of polygons; a relative path starts at the
        library root.
    layer: GeoPackage layer; empty takes the first.
    id_field: Attribute used as ``fid``; empty numbers the features 0, 1, ….
    indices: Index names, or ``All``.
    date_min: First sensing day, YYYY-MM-DD.
    date_max: Last sensing day, YYYY-MM-DD; empty means today (UTC). It is part of the CSV
        name, so set it when several tiles' runs should merge into one file.
    max_cloud: Highest scene cloud cover kept, in % (inclusive; unknown cover is kept).
    mask: Mask spec of the masked index read; empty reads the raw index (``nbcld`` is 0).
    plots: Write a PNG plot per polygon and index (about 0.2 s each; the UI shows one
        small plot per index either way).
    smooth: Add sen2chain's Savitzky-Golay ``smoothed`` column (s2_assets.outputs.smoothing).
    smooth_window: Its window, in 5-day steps (odd, >= 3; sen2chain: 11).
    smooth_order: Its polynomial order (below the window; sen2chain: 3).
    compiled: Also write the rows per period: any of yearly, monthly, weekly, daily, all.
    force: Re-read every product; off reads only products the previous run of the same
        extraction did not (sen2chain's force_extraction).
    """

    vector: str
    layer: str = ""
    id_field: str = ""
    indices: list[str] = ["NDVI"]
    date_min: str = DEFAULT_DATE_START
    date_max: str = ""
    max_cloud: float = 100.0
    mask: str = DEFAULT_MASK_SPEC
    plots: bool = True
    smooth: bool = False
    smooth_window: int = 11
    smooth_order: int = 3
    compiled: list[str] = []
    force: bool = True


def _request(config: TimeSeriesConfig, library: Library) -> ts.ExtractionRequest:
    """The pure request from the run config; every bad value is a ``dg.Failure`` naming it."""
    date_min = parse_day(config.date_min, field="date_min", default=datetime.now(UTC).date())
    date_max = parse_day(config.date_max, field="date_max", default=datetime.now(UTC).date())
    if date_max < date_min:
        raise dg.Failure(f"empty window: date_max {date_max} is before date_min {date_min}")
    vector = Path(config.vector).expanduser()
    try:
        names = [n for v in config.indices for n in _index_names(v)]
        mask = str(parse_mask_spec(config.mask)) if config.mask.strip() else None
        polygons = read_polygons(
            vector if vector.is_absolute() else library.root / vector,
            layer=config.layer or None,
            id_field=config.id_field or None,
        )
        smoothing = (
            Smoothing(window=config.smooth_window, order=config.smooth_order)
            if config.smooth
            else None
        )
    except (S2AssetsError, ValueError) as exc:
        raise dg.Failure(str(exc)) from exc
    unknown = [p for p in config.compiled if p not in PERIODS]
    if unknown:
        raise dg.Failure(f"compiled: unknown period(s) {unknown}; valid: {', '.join(PERIODS)}")
    return ts.ExtractionRequest(
        polygons=polygons,
        indices=tuple(dict.fromkeys(names)),
        date_min=date_min,
        date_max=date_max,
        max_cloud=config.max_cloud,
        mask=mask,
        plots=config.plots,
        options=SeriesOptions(smoothing=smoothing, compile=tuple(dict.fromkeys(config.compiled))),
        force=config.force,
    )


def _index_names(value: str) -> list[str]:
    return list(INDEX_NAMES) if value.strip().upper() == "ALL" else [parse_index_name(value)]


def _previews(series: list[ts.IndexSeries]) -> str:
    images = [
        f"**{s.index}**\n\n![{s.index}](data:image/png;base64,"
        f"{base64.b64encode(s.preview_png).decode('ascii')})"
        for s in series
        if s.preview_png
    ]
    return "\n\n".join(images[:MAX_PREVIEWS]) or "no polygon of this tile has valid pixels"


def build_timeseries_asset(upstream: Sequence[dg.AssetsDefinition]) -> dg.AssetsDefinition:
    """The ``timeseries`` asset, partitioned by tile, reading the index assets in ``upstream``
    (tile x date) through their tile dimension."""
    by_tile = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="tile")
    deps = [dg.AssetDep(key, partition_mapping=by_tile) for asset in upstream for key in asset.keys]

    @dg.asset(
        partitions_def=TILES,
        deps=deps,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="raster",
        group_name="outputs",
        kinds={"csv"},
    )
    def timeseries(
        context: dg.AssetExecutionContext, config: TimeSeriesConfig, library: LibraryResource
    ) -> dg.MaterializeResult:
        """Zonal statistics of masked indices per polygon and date (sen2chain's TimeSeries),
        one CSV and one NetCDF per index under data/EXTRACTION/<source>/, a plot per
        polygon (docs/outputs.md, "Time series")."""
        lib = library.library()
        request = _request(config, lib)
        for raw_key in context.partition_keys:
            try:
                series = ts.extract_tile(lib, request, validate_tile_id(str(raw_key)))
            except S2AssetsError as exc:
                raise dg.Failure(f"tile {raw_key}: {exc}") from exc
            context.add_asset_metadata(
                {
                    "csv": dg.MetadataValue.json({s.index: str(s.csv) for s in series}),
                    "netcdf": dg.MetadataValue.json({s.index: str(s.netcdf) for s in series}),
                    "products": dg.MetadataValue.json({s.index: s.products for s in series}),
                    "tile_rows": dg.MetadataValue.json({s.index: s.tile_rows for s in series}),
                    "total_rows": dg.MetadataValue.json({s.index: s.total_rows for s in series}),
                    "plots": sum(len(s.plots) for s in series),
                    "plot": dg.MetadataValue.md(_previews(series)),
                },
                partition_key=raw_key,
            )
        return dg.MaterializeResult()

    return timeseries
