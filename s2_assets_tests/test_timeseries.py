"""Time-series extraction: zonal statistics against hand-computed values on tiny rasters.

The index rasters are 8 x 8 pixels of 10 m on tile 40KCB's demo grid (EPSG:32740, upper
left 300000 E, 7800040 N) with value ``100 * row + col``, so every expected statistic can be
listed pixel by pixel; the cloud probability is 4 x 4 pixels of 20 m. Polygons are drawn on
pixel edges in UTM and stored in WGS84 (GeoJSON) or UTM (GeoPackage), so the extraction's
reprojection is exercised too.
"""

from __future__ import annotations

import csv
import json
import statistics
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin
from rasterio.warp import transform_geom

from s2_assets.assets.outputs import TimeSeriesConfig, build_timeseries_asset
from s2_assets.definitions import build_definitions
from s2_assets.demo.products import build_safe
from s2_assets.library.tree import Library
from s2_assets.outputs import timeseries as ts
from s2_assets.outputs import zonal
from s2_assets.outputs.polygons import Polygons, TimeSeriesError, read_polygons
from s2_assets.outputs.timeseries import ExtractionRequest
from s2_assets.products import qi_path, read_metadata
from s2_assets.raster.product_indices import compute_indices
from s2_assets.raster.product_masks import compute_cloud_masks
from s2_assets.raster.types import INDEX_NODATA
from s2_assets.resources.library import LibraryResource
from s2_assets.settings import Settings
from s2_assets.specs import INDEX_NAMES

UTM = "EPSG:32740"
X0, Y0 = 300000.0, 7800040.0
SIZE = 8
DAY = datetime(2024, 3, 5, 6, 35, 11, tzinfo=UTC)
NDVI = "NDVI"
MASK = "CM001"


def l2a_id(tile: str, day: datetime = DAY) -> str:
    stamp = day.strftime("%Y%m%dT%H%M%S")
    return f"S2A_MSIL2A_{stamp}_N0510_R120_T{tile}_{day.strftime('%Y%m%d')}T083511"


def write_raster(path: Path, array: np.ndarray, *, x0: float, res: float, nodata: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    driver = "JP2OpenJPEG" if path.suffix == ".jp2" else "GTiff"
    options = {"QUALITY": "100", "REVERSIBLE": "YES"} if driver == "JP2OpenJPEG" else {}
    with rasterio.open(
        path, "w", driver=driver, width=array.shape[1], height=array.shape[0], count=1,
        dtype=array.dtype, crs=UTM, transform=from_origin(x0, Y0, res, res), nodata=nodata,
        **options,
    ) as dst:  # fmt: skip
        dst.write(array, 1)
    return path


RAW = (100 * np.arange(SIZE)[:, None] + np.arange(SIZE)[None, :]).astype(np.int16)
RAW_NODATA = {(3, 3)}
MASKED = {(2, 2), (2, 3), (6, 0), (6, 1), (7, 0), (7, 1)}
PROBABILITY = (10 * np.arange(16).reshape(4, 4)).astype(np.uint8)


def add_product(
    library: Library, tile: str, *, x0: float = X0, day: datetime = DAY, cldprb: bool = True
) -> str:
    """Raw and CM001-masked NDVI (and the cloud probability side product) of one L2A."""
    pid = l2a_id(tile, day)
    raw = RAW.copy()
    for cell in RAW_NODATA:
        raw[cell] = INDEX_NODATA
    masked = raw.copy()
    for cell in MASKED:
        masked[cell] = INDEX_NODATA
    folder = library.index_dir(NDVI, tile, pid)
    write_raster(folder / f"{pid}_{NDVI}.tif", raw, x0=x0, res=10, nodata=INDEX_NODATA)
    write_raster(folder / f"{pid}_{NDVI}_{MASK}.tif", masked, x0=x0, res=10, nodata=INDEX_NODATA)
    if cldprb:
        write_raster(
            library.mask_dir(tile, pid) / "MSK_CLDPRB_20m.jp2", PROBABILITY, x0=x0, res=20,
            nodata=None,
        )  # fmt: skip
    return pid


def box(col0: int, row0: int, col1: int, row1: int, *, x0: float = X0) -> shapely.Polygon:
    """The UTM rectangle over 10 m pixels col0..col1-1, row0..row1-1."""
    return shapely.box(x0 + 10 * col0, Y0 - 10 * row1, x0 + 10 * col1, Y0 - 10 * row0)


def write_geojson(path: Path, shapes: list[shapely.Polygon], names: list[str]) -> Path:
    features = [
        {
            "type": "Feature",
            "properties": {"name": name, "count": index},
            "geometry": transform_geom(UTM, "EPSG:4326", shapely.geometry.mapping(shape)),
        }
        for index, (shape, name) in enumerate(zip(shapes, names, strict=True))
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


# Polygon A: rows 2..5 x cols 2..5, one raw nodata pixel and two masked ones inside.
# Polygon B: rows 0..1 x cols 6..9: half of it beyond the raster's east edge.
# Polygon C: entirely beyond the raster. Polygon D: only masked pixels.
SHAPES = [box(2, 2, 6, 6), box(6, 0, 10, 2), box(20, 20, 22, 22), box(0, 6, 2, 8)]
NAMES = ["a", "b", "c", "d"]


def expected(cells: list[tuple[int, int]], *, missing: set[tuple[int, int]]) -> dict[str, Any]:
    values = [int(RAW[c]) for c in cells if c not in missing and c[1] < SIZE]
    q25, median, q75 = statistics.quantiles(values, n=4, method="inclusive")
    return {
        "count": len(values),
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
        "std": statistics.pstdev(values),
        "median": median,
        "percentile_25": q25,
        "percentile_75": q75,
    }


def cells(col0: int, row0: int, col1: int, row1: int) -> list[tuple[int, int]]:
    return [(r, c) for r in range(row0, row1) for c in range(col0, col1)]


def request(polygons: Polygons, **changes: Any) -> ExtractionRequest:
    values: dict[str, Any] = {
        "polygons": polygons, "indices": (NDVI,), "date_min": date(2015, 6, 23),
        "date_max": date(2030, 1, 1), "max_cloud": 100.0, "mask": MASK,
    }  # fmt: skip
    values.update(changes)
    return ExtractionRequest(**values)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_zonal_statistics_match_hand_computed_values(library: Library, tmp_path: Path) -> None:
    add_product(library, "40KCB")
    polygons = read_polygons(write_geojson(tmp_path / "fields.geojson", SHAPES, NAMES))
    [result] = ts.extract_tile(library, request(polygons), "40KCB")

    name = "fields-geojson_NDVI_CM001_2015-06-23_2030-01-01"
    assert result.csv == library.root / f"data/EXTRACTION/fields-geojson/{name}.csv"
    rows = read_csv(result.csv)
    assert list(rows[0]) == [*ts.CSV_COLUMNS, "name", "count_attr"]
    # C is beyond the tile, D has no valid pixel: both dropped, as sen2chain drops rows
    # without a mean.
    assert [(r["fid"], r["name"]) for r in rows] == [("0", "a"), ("1", "b")]
    a, b = rows
    assert a["date"] == "2024-03-05 06:35:11" and a["tile"] == "40KCB"
    assert a["filename"] == f"{l2a_id('40KCB')}_NDVI_CM001.tif"

    want_a = expected(cells(2, 2, 6, 6), missing=RAW_NODATA | MASKED)
    assert {k: float(a[k]) for k in want_a} == pytest.approx(want_a, abs=1e-9)
    assert (a["count"], a["nodata"], a["nbcld"]) == ("13", "3", "2")
    # 20 m pixels whose centre is in A: rows 1..2 x cols 1..2.
    assert float(a["cldprb"]) == pytest.approx(float(np.mean(PROBABILITY[1:3, 1:3])))

    want_b = expected(cells(6, 0, 10, 2), missing=set())
    assert {k: float(b[k]) for k in want_b} == pytest.approx(want_b, abs=1e-9)
    # Four of B's eight pixels are beyond the raster: no data, as rasterstats counts them.
    assert (b["count"], b["nodata"], b["nbcld"]) == ("4", "4", "0")
    assert float(b["cldprb"]) == PROBABILITY[0, 3]
    assert b["count_attr"] == "1"

    assert result.products == 1 and result.tile_rows == 2 and result.total_rows == 2
    assert [p.name for p in result.plots] == [f"{name}_fid0.png", f"{name}_fid1.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in result.plots)


def test_geopackage_in_utm_gives_the_same_rows_as_geojson(library: Library, tmp_path: Path) -> None:
    add_product(library, "40KCB")
    gpkg = tmp_path / "fields.gpkg"
    pyogrio.raw.write(
        gpkg, np.array([shapely.to_wkb(s) for s in SHAPES[:2]], dtype=object),
        [np.array(NAMES[:2], dtype=object)], ["name"], geometry_type="Polygon", crs=UTM,
        driver="GPKG",
    )  # fmt: skip
    geojson = write_geojson(tmp_path / "other.geojson", SHAPES[:2], NAMES[:2])
    by_gpkg = ts.extract(read_polygons(gpkg), _products(library), tile="40KCB")
    by_json = ts.extract(read_polygons(geojson), _products(library), tile="40KCB")
    columns = list(ts.CSV_COLUMNS)
    assert by_gpkg[columns].equals(by_json[columns])


def _products(library: Library, **changes: Any) -> list[ts.IndexProduct]:
    options: dict[str, Any] = {
        "tile": "40KCB", "index": NDVI, "mask": MASK, "date_min": date(2015, 6, 23),
        "date_max": date(2030, 1, 1), "max_cloud": 100.0,
    }  # fmt: skip
    options.update(changes)
    return ts.find_products(library, **options)


def test_only_the_windows_around_the_polygons_are_read(
    library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_product(library, "40KCB")
    windows: list[tuple[int, int, int, int]] = []
    real = zonal.read_window

    def spy(src: Any, window: Any) -> np.ndarray:
        windows.append((window.col_off, window.row_off, window.width, window.height))
        return real(src, window)

    monkeypatch.setattr(zonal, "read_window", spy)
    polygons = read_polygons(write_geojson(tmp_path / "f.geojson", SHAPES[:1], NAMES[:1]))
    ts.extract(polygons, _products(library), tile="40KCB")
    # Masked index, raw index (10 m, the 4 x 4 box of A), cloud probability (20 m, 2 x 2).
    assert windows == [(2, 2, 4, 4), (2, 2, 4, 4), (1, 1, 2, 2)]


def test_a_polygon_covering_two_tiles_keeps_the_tile_with_more_pixels(
    library: Library, tmp_path: Path
) -> None:
    # 40KDB's raster starts 40 m east of 40KCB's: they overlap on 40KCB's columns 4..7.
    add_product(library, "40KCB")
    add_product(library, "40KDB", x0=X0 + 40)
    shapes = [box(2, 2, 6, 6), box(5, 0, 11, 2)]  # A: 4 columns in 40KCB, 2 in 40KDB
    polygons = read_polygons(write_geojson(tmp_path / "two.geojson", shapes, ["a", "e"]))
    [first] = ts.extract_tile(library, request(polygons), "40KCB")
    assert [r["tile"] for r in read_csv(first.csv)] == ["40KCB", "40KCB"]
    [second] = ts.extract_tile(library, request(polygons), "40KDB")

    rows = read_csv(second.csv)
    assert second.tile_rows == 2 and second.total_rows == 2
    assert [(r["fid"], r["tile"], r["count"]) for r in rows] == [
        ("0", "40KCB", "13"),  # 40KDB sees only 8 valid pixels of A
        ("1", "40KDB", "12"),  # 40KCB sees 6 of E's 12
    ]
    # Each tile's own rows are kept beside the CSV; a re-run replaces only its own.
    parts = sorted(p.name for p in (first.csv.parent / "tiles").iterdir())
    name = "two-geojson_NDVI_CM001_2015-06-23_2030-01-01"
    assert parts == [f"{name}_{t}.parquet" for t in ("40KCB", "40KDB")]
    [again] = ts.extract_tile(library, request(polygons), "40KCB")
    assert read_csv(again.csv) == rows


def test_deduplication_prefers_higher_count_then_lower_std() -> None:
    import pandas as pd

    when = pd.Timestamp("2024-03-05 06:35:11")
    frame = pd.DataFrame(
        {
            "date": [when, when, when, when],
            "fid": [1, 1, 1, 0],
            "tile": ["40KCB", "40KDB", "40KEB", "40KCB"],
            "count": [5, 9, 9, 1],
            "std": [1.0, 3.0, 2.0, 0.0],
        }
    )
    kept = ts.deduplicate(frame)
    assert list(zip(kept["fid"], kept["tile"], strict=True)) == [(0, "40KCB"), (1, "40KEB")]


def test_dates_cloud_cover_and_mask_select_products(library: Library, tmp_path: Path) -> None:
    days = [datetime(2024, 3, d, 6, 35, 11, tzinfo=UTC) for d in (5, 15, 25)]
    covers = [10.0, 80.0, 30.0]
    for day, cover in zip(days, covers, strict=True):
        safe = build_safe(
            library.level_dir("L2A", "40KCB"), level="L2A", sensing=day, size=12, cloud_cover=cover
        )
        add_product(library, "40KCB", day=day, cldprb=False)
        assert safe.name.startswith(l2a_id("40KCB", day)[:26])
    ids = [p.l2a.date.day for p in _products(library, max_cloud=50.0)]
    assert ids == [5, 25]  # 80 % cloud left out
    assert [p.l2a.date.day for p in _products(library, date_max=date(2024, 3, 15))] == [5, 15]
    assert _products(library, mask="CM003-PRB1-ITER5") == []  # no such masked variant
    raw = _products(library, mask=None)
    assert [p.index_file.name.endswith("_NDVI.tif") for p in raw] == [True] * 3
    assert not any(p.masked for p in raw)
    # The cloud probability comes from the L2A SAFE when it is there.
    assert all(p.cldprb_file and "QI_DATA" in str(p.cldprb_file) for p in raw)


def test_unknown_cloud_cover_is_kept(library: Library) -> None:
    add_product(library, "40KCB")  # no L2A SAFE: its metadata (and cloud cover) is gone
    [product] = _products(library, max_cloud=0.0)
    assert product.cloud_cover is None


def test_bad_vector_files_name_the_file_and_feature(tmp_path: Path) -> None:
    with pytest.raises(TimeSeriesError, match=r"missing\.geojson: no such file"):
        read_polygons(tmp_path / "missing.geojson")
    broken = tmp_path / "broken.geojson"
    broken.write_text("{not json")
    with pytest.raises(TimeSeriesError, match=r"broken\.geojson: unreadable"):
        read_polygons(broken)
    points = tmp_path / "points.geojson"
    points.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(s)}
                    for s in (shapely.box(55, -20, 55.1, -19.9), shapely.Point(55, -20))
                ],
            }
        )
    )
    with pytest.raises(TimeSeriesError, match=r"feature 1 has Point; valid: Polygon"):
        read_polygons(points)
    fields = write_geojson(tmp_path / "fields.geojson", SHAPES[:1], NAMES[:1])
    with pytest.raises(TimeSeriesError, match=r"no attribute 'plot'.*attributes: name, count"):
        read_polygons(fields, id_field="plot")
    assert [f.fid for f in read_polygons(fields, id_field="name").features] == ["a"]


# ------------------------------------------------------------------- the Dagster asset


def _pipeline_library(root: Path) -> tuple[Library, str]:
    """One demo L2A of 40KCB with its CM001 mask and NDVI computed by the real pipeline."""
    library = Library(root)
    safe = build_safe(library.level_dir("L2A", "40KCB"), level="L2A", sensing=DAY, size=12)
    metadata = read_metadata(safe)
    pid = metadata.product_uri
    mask_dir = library.mask_dir("40KCB", pid)
    compute_cloud_masks(
        product_id=pid, safe_dir=safe, side_products=None, metadata=metadata, specs=[MASK],
        out_dir=mask_dir,
    )  # fmt: skip
    compute_indices(
        product_id=pid, safe_dir=safe, metadata=metadata, indices=[NDVI],
        masks={MASK: mask_dir / f"{pid}_{MASK}.tif"},
        out_dir_for=partial(library.index_dir, tile="40KCB", l2a_id=pid),
    )  # fmt: skip
    return library, pid


def _materialize(library: Library, config: TimeSeriesConfig) -> dg.ExecuteInProcessResult:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("tiles", ["40KCB"])
    return dg.materialize(
        [build_timeseries_asset([])],
        partition_key="40KCB",
        instance=instance,
        resources={"library": LibraryResource(root=str(library.root))},
        run_config=dg.RunConfig({"timeseries": config}),
        raise_on_error=False,
    )


@pytest.mark.filterwarnings("ignore::dagster.BetaWarning")
def test_asset_extracts_pipeline_products_and_shows_a_plot(tmp_path: Path) -> None:
    library, pid = _pipeline_library(tmp_path / "library")
    # Relative vector paths start at the library root.
    write_geojson(library.root / "plots.geojson", [box(2, 2, 10, 10)], ["field"])
    config = TimeSeriesConfig(
        vector="plots.geojson", indices=["ndvi"], mask=MASK, date_max="2024-12-31", smooth=True
    )
    result = _materialize(library, config)
    assert result.success
    [materialization] = result.asset_materializations_for_node("timeseries")
    metadata = materialization.metadata
    csv_path = Path(metadata["csv"].value[NDVI])  # type: ignore[index]
    assert csv_path.name == "plots-geojson_NDVI_CM001_2015-06-23_2024-12-31.csv"
    assert Path(metadata["netcdf"].value[NDVI]).is_file()  # type: ignore[index]
    assert metadata["plot"].value.startswith("**NDVI**\n\n![NDVI](data:image/png;base64,")  # type: ignore[union-attr]
    assert len(metadata["plot"].value) < 40_000  # type: ignore[arg-type]
    assert metadata["plots"].value == 1

    [row] = read_csv(csv_path)
    index_dir = library.index_dir(NDVI, "40KCB", pid)
    with rasterio.open(index_dir / f"{pid}_NDVI_{MASK}.tif") as src:
        masked = src.read(1)[2:10, 2:10]
    with rasterio.open(index_dir / f"{pid}_NDVI.tif") as src:
        raw = src.read(1)[2:10, 2:10]
    with rasterio.open(
        qi_path(library.products("L2A", "40KCB")[0].path, "MSK_CLDPRB_20m.jp2")
    ) as src:
        probability = src.read(1)[1:5, 1:5]
    valid = masked[masked != INDEX_NODATA]
    assert int(row["count"]) == valid.size and int(row["nodata"]) == 64 - valid.size
    assert int(row["nbcld"]) == int((masked == INDEX_NODATA).sum() - (raw == INDEX_NODATA).sum())
    assert float(row["mean"]) == pytest.approx(float(valid.astype(float).mean()))
    assert float(row["cldprb"]) == pytest.approx(float(probability.mean()))
    assert row["name"] == "field" and row["filename"] == f"{pid}_NDVI_{MASK}.tif"
    assert "smoothed" in row  # one product: too short to smooth, the column is there empty


@pytest.mark.filterwarnings("ignore::dagster.BetaWarning")
def test_asset_names_bad_config_values(tmp_path: Path) -> None:
    library, _ = _pipeline_library(tmp_path / "library")
    write_geojson(library.root / "plots.geojson", [box(2, 2, 10, 10)], ["field"])
    for config, message in (
        (TimeSeriesConfig(vector="plots.geojson", indices=["NDVX"]), "unknown index 'NDVX'"),
        (TimeSeriesConfig(vector="plots.geojson", mask="CM009"), "invalid cloud-mask spec"),
        (TimeSeriesConfig(vector="nowhere.gpkg"), "nowhere.gpkg: no such file"),
        (TimeSeriesConfig(vector="plots.geojson", compiled=["hourly"]), "unknown period"),
        (
            TimeSeriesConfig(vector="plots.geojson", smooth=True, smooth_window=10),
            "smoothing window 10: valid: an odd number >= 3",
        ),
        (
            TimeSeriesConfig(vector="plots.geojson", date_min="2024-02-01", date_max="2024-01-01"),
            "date_max 2024-01-01 is before date_min 2024-02-01",
        ),
    ):
        result = _materialize(library, config)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert message in str(failure.step_failure_data.error), message


def test_definitions_wire_timeseries_by_tile_and_catalog_after_products(tmp_path: Path) -> None:
    (tmp_path / "archive").mkdir()
    settings = Settings(data_home=tmp_path / "library", archive_root=str(tmp_path / "archive"))
    graph = build_definitions(settings).resolve_asset_graph()
    series = graph.get(dg.AssetKey("timeseries"))
    assert isinstance(series.partitions_def, dg.DynamicPartitionsDefinition)
    assert series.partitions_def.name == "tiles"
    assert {dg.AssetKey(n.lower()) for n in INDEX_NAMES} | {dg.AssetKey("cloudmask")} == set(
        series.parent_keys
    )
    mapping = graph.get_partition_mapping(series.key, dg.AssetKey("ndvi"))
    assert isinstance(mapping, dg.MultiToSingleDimensionPartitionMapping)
    catalog = graph.get(dg.AssetKey("catalog"))
    assert catalog.partitions_def is None
    assert {dg.AssetKey("l2a"), dg.AssetKey("cloudmask"), dg.AssetKey("ndvi")} <= set(
        catalog.parent_keys
    )


def test_plots_can_be_left_out_but_the_preview_stays(library: Library, tmp_path: Path) -> None:
    add_product(library, "40KCB")
    polygons = read_polygons(write_geojson(tmp_path / "f.geojson", SHAPES[:2], NAMES[:2]))
    [result] = ts.extract_tile(library, request(polygons, plots=False), "40KCB")
    assert result.plots == () and not (result.csv.parent / "plots").exists()
    assert result.preview_png is not None and result.preview_png.startswith(b"\x89PNG")
