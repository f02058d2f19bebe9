"""Time-series files: names that cannot collide, the NetCDF, Savitzky-Golay smoothing,
compiled periods, shapefiles, incremental extraction and the one acquisition time.

The rasters are the 8 x 8 test products of ``test_timeseries`` (value ``100 * row + col``).
"""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyogrio.raw
import pytest
import shapely
import xarray as xr

from s2_assets.library.tree import Library
from s2_assets.outputs import timeseries as ts
from s2_assets.outputs.polygons import Polygons, read_polygons
from s2_assets.outputs.smoothing import Smoothing, smooth, smooth_polygon
from s2_assets.outputs.timeseries_files import SeriesOptions, series_name, source_name
from s2_assets.products import ProductName, acquisition_time
from s2_assets_tests.test_timeseries import (
    DAY,
    NAMES,
    SHAPES,
    UTM,
    add_product,
    l2a_id,
    request,
    write_geojson,
)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_vector(path: Path, shapes: list[shapely.Polygon], names: list[str]) -> Path:
    driver = {".shp": "ESRI Shapefile", ".gpkg": "GPKG"}[path.suffix]
    pyogrio.raw.write(
        path, np.array([shapely.to_wkb(s) for s in shapes], dtype=object),
        [np.array(names, dtype=object)], ["name"], geometry_type="Polygon", crs=UTM,
        driver=driver,
    )  # fmt: skip
    return path


def test_source_names_keep_sen2chain_for_shapefiles_and_never_collide() -> None:
    assert source_name(Path("/v/fields.shp")) == "fields"
    assert source_name(Path("/v/fields.gpkg")) == "fields-gpkg"
    assert source_name(Path("/v/fields.geojson")) == "fields-geojson"
    assert source_name(Path("/v/fields-gpkg.shp")) == "fields-gpkg-shp"
    day = date(2024, 1, 1)
    assert series_name("fields", "NDVI", None, day, day) == "fields_NDVI_RAW_2024-01-01_2024-01-01"
    assert series_name("fields", "NDVI", "CM001", day, day).endswith(
        "_NDVI_CM001_2024-01-01_2024-01-01"
    )


def test_raw_masked_shapefile_and_geopackage_runs_write_four_files(
    library: Library, tmp_path: Path
) -> None:
    add_product(library, "40KCB")
    written = set()
    for vector in (
        write_vector(tmp_path / "fields.shp", SHAPES[:2], NAMES[:2]),
        write_vector(tmp_path / "fields.gpkg", SHAPES[:2], NAMES[:2]),
    ):
        polygons = read_polygons(vector)  # shapefiles read like any other vector file
        for mask in (None, "CM001"):
            [result] = ts.extract_tile(library, request(polygons, mask=mask), "40KCB")
            written.add(result.csv.relative_to(library.root / "data" / "EXTRACTION"))
    assert sorted(str(p) for p in written) == [
        "fields-gpkg/fields-gpkg_NDVI_CM001_2015-06-23_2030-01-01.csv",
        "fields-gpkg/fields-gpkg_NDVI_RAW_2015-06-23_2030-01-01.csv",
        "fields/fields_NDVI_CM001_2015-06-23_2030-01-01.csv",
        "fields/fields_NDVI_RAW_2015-06-23_2030-01-01.csv",
    ]
    root = library.root / "data" / "EXTRACTION"
    raw = read_csv(root / "fields/fields_NDVI_RAW_2015-06-23_2030-01-01.csv")
    masked = read_csv(root / "fields/fields_NDVI_CM001_2015-06-23_2030-01-01.csv")
    # Polygon A has 2 masked pixels: the raw run counts them, the masked one does not.
    assert (raw[0]["count"], masked[0]["count"]) == ("15", "13")
    assert raw[0]["nbcld"] == "0" and masked[0]["nbcld"] == "2"


def test_netcdf_holds_the_csv_statistics_by_fid_and_time(library: Library, tmp_path: Path) -> None:
    later = DAY + timedelta(days=10)
    add_product(library, "40KCB")
    add_product(library, "40KCB", day=later)
    polygons = read_polygons(write_geojson(tmp_path / "f.geojson", SHAPES[:2], NAMES[:2]))
    [result] = ts.extract_tile(library, request(polygons), "40KCB")
    rows = read_csv(result.csv)
    assert len(rows) == 4
    with xr.open_dataset(result.netcdf) as dataset:
        assert dict(dataset.sizes) == {"fid": 2, "time": 2}
        assert set(ts.STAT_COLUMNS) <= set(dataset.data_vars)
        assert list(dataset["name"].values) == ["a", "b"]  # attributes as fid coordinates
        times = [pd.Timestamp(t).to_pydatetime() for t in dataset["time"].values]
        assert times == [DAY.replace(tzinfo=None), later.replace(tzinfo=None)]
        for row in rows:
            cell = dataset.sel(fid=int(row["fid"]), time=pd.Timestamp(row["date"]))
            for column in ts.STAT_COLUMNS:
                assert float(cell[column]) == pytest.approx(float(row[column])), column
            assert str(cell["tile"].values) == "40KCB"
            assert str(cell["filename"].values) == row["filename"]


def test_csv_date_is_the_acquisition_time_the_catalogue_uses(
    library: Library, tmp_path: Path
) -> None:
    pid = add_product(library, "40KCB")
    polygons = read_polygons(write_geojson(tmp_path / "f.geojson", SHAPES[:1], NAMES[:1]))
    [result] = ts.extract_tile(library, request(polygons), "40KCB")
    [row] = read_csv(result.csv)
    when = acquisition_time(ProductName.parse(pid))
    assert row["date"] == when.strftime("%Y-%m-%d %H:%M:%S") and when.tzinfo == UTC


def series(means: list[float | None], *, step: int = 5, **columns: Any) -> pd.DataFrame:
    days = [datetime(2024, 1, 1) + timedelta(days=step * k) for k in range(len(means))]
    frame = pd.DataFrame(
        {
            "date": days,
            "fid": 0,
            "count": columns.get("count", [100] * len(means)),
            "nodata": columns.get("nodata", [0] * len(means)),
            "mean": means,
        }
    )
    return frame


def test_savgol_keeps_a_cubic_and_fills_gaps_from_neighbours() -> None:
    cubic = [float(1000 + 3 * k**3 - 20 * k**2 + k) for k in range(15)]
    frame = series(cubic)
    smoothed = smooth_polygon(frame, Smoothing())
    # A cubic on the 5-day grid is its own Savitzky-Golay fit (order 3), in x 0.0001 units.
    np.testing.assert_allclose(smoothed, np.array(cubic) * 1e-4, atol=1e-9)
    # A cloudy row (nodata 80 % of the largest count) is left out of the fit but still gets
    # the smoothed value of its day; a flat series with one cloudy outlier stays flat.
    flat = series([5000.0] * 11, nodata=[0] * 5 + [80] + [0] * 5)
    flat.loc[5, "mean"] = -9000.0
    np.testing.assert_allclose(smooth_polygon(flat, Smoothing()), 0.5, atol=1e-12)


def test_smoothing_edge_cases() -> None:
    # Shorter than the window: the longest odd window it holds (5 of 6 points).
    line = series([float(100 * k) for k in range(6)])
    np.testing.assert_allclose(smooth_polygon(line, Smoothing()), np.arange(6) * 0.01, atol=1e-12)
    # Too short for any window above the order: not smoothed.
    assert smooth_polygon(series([1.0, 2.0, 3.0]), Smoothing()).isna().all()
    # Two polygons are smoothed each on its own.
    two = pd.concat([series([1000.0] * 7), series([3000.0] * 7).assign(fid=1)], ignore_index=True)
    np.testing.assert_allclose(smooth(two, Smoothing(window=5)), [0.1] * 7 + [0.3] * 7)
    with pytest.raises(ValueError, match="odd number"):
        Smoothing(window=10)
    with pytest.raises(ValueError, match="order 5"):
        Smoothing(window=5, order=5)


def test_compiled_periods_and_the_smoothed_column(library: Library, tmp_path: Path) -> None:
    days = [datetime(2024, 3, 5, 6, 35, 11, tzinfo=UTC) + timedelta(days=5 * k) for k in range(8)]
    for day in days:
        add_product(library, "40KCB", day=day, cldprb=False)
    polygons = read_polygons(write_geojson(tmp_path / "f.geojson", SHAPES[:1], NAMES[:1]))
    options = SeriesOptions(smoothing=Smoothing(window=5), compile=("monthly", "weekly", "all"))
    [result] = ts.extract_tile(library, request(polygons, options=options), "40KCB")
    rows = read_csv(result.csv)
    assert len(rows) == 8
    # Every product has the same values: the smoothed series is flat at the mean x 0.0001.
    assert {round(float(r["smoothed"]), 6) for r in rows} == {
        round(float(rows[0]["mean"]) * 1e-4, 6)
    }
    compiled = result.csv.parent / "compiled"
    name = result.csv.stem
    monthly = sorted(p.name for p in (compiled / "monthly").iterdir())
    assert monthly == [f"{name}_2024-03.csv", f"{name}_2024-04.csv"]
    assert len(read_csv(compiled / "monthly" / f"{name}_2024-03.csv")) == 6  # 5 .. 30 March
    weekly = sorted(p.name.removeprefix(f"{name}_") for p in (compiled / "weekly").iterdir())
    assert weekly[0] == "2024-W10.csv" and len(weekly) == 6
    assert not (compiled / "all").exists()  # the main CSV is the whole series


def test_without_force_only_new_products_are_read(
    library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_product(library, "40KCB")
    polygons = read_polygons(write_geojson(tmp_path / "f.geojson", SHAPES[:2], NAMES[:2]))
    [first] = ts.extract_tile(library, request(polygons, force=False), "40KCB")
    later = DAY + timedelta(days=5)
    add_product(library, "40KCB", day=later)
    read: list[str] = []
    real = ts.extract

    def spy(polygons: Polygons, products: Any, *, tile: str) -> pd.DataFrame:
        read.extend(p.index_file.name for p in products)
        return real(polygons, products, tile=tile)

    monkeypatch.setattr(ts, "extract", spy)
    [second] = ts.extract_tile(library, request(polygons, force=False), "40KCB")
    assert read == [f"{l2a_id('40KCB', later)}_NDVI_CM001.tif"]
    assert (first.total_rows, second.total_rows) == (2, 4)
    read.clear()
    ts.extract_tile(library, request(polygons, force=True), "40KCB")
    assert len(read) == 2
