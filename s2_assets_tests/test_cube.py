"""``open_cube``: a tile's masked index files and its composites as a lazy xarray Dataset."""

from __future__ import annotations

from datetime import date

import dagster as dg
import numpy as np
import pytest
import rasterio

from s2_assets.library.tree import Library
from s2_assets.outputs.cube import CubeError, open_cube
from s2_assets_tests.raster.test_composite import CRS
from s2_assets_tests.test_composites import SPEC, TILE, l2a_id, materialize, put_index


def fill(library: Library) -> list[np.ndarray]:
    days = [(3, 1), (20, 1), (4, 2)]
    layers = [np.full((6, 5), 1000 * (i + 1)) for i in range(len(days))]
    layers[1][0, 0] = 32767  # masked on the second date
    for (day, month), layer in zip(days, layers, strict=True):
        put_index(library, l2a_id(day, month), layer)
    return layers


def test_masked_files_open_as_a_lazy_decoded_cube(library: Library) -> None:
    layers = fill(library)
    cube = open_cube(TILE, "ndvi", mask=SPEC, library=library)
    ndvi = cube["NDVI"]
    assert ndvi.dims == ("time", "y", "x") and ndvi.shape == (3, 6, 5)
    assert [str(t)[:10] for t in ndvi["time"].values] == ["2024-01-03", "2024-01-20", "2024-02-04"]
    assert list(ndvi["product"].values) == [l2a_id(3), l2a_id(20), l2a_id(4, 2)]
    assert cube.attrs["crs_wkt"] == CRS.to_wkt() == ndvi["spatial_ref"].attrs["crs_wkt"]
    assert ndvi["x"].values[0] == 300005.0 and ndvi["y"].values[0] == 7800035.0
    assert ndvi.dtype == np.float32
    corner = ndvi.sel(x=300005.0, y=7800035.0).values
    np.testing.assert_allclose(corner, [0.1, np.nan, 0.3], rtol=1e-6)
    monthly = ndvi.resample(time="1MS").mean()
    np.testing.assert_allclose(monthly.isel(x=0, y=0).values, [0.1, 0.3], rtol=1e-6)
    np.testing.assert_allclose(monthly.isel(x=1, y=0).values, [0.15, 0.3], rtol=1e-6)
    later = open_cube(TILE, "NDVI", mask=SPEC, first=date(2024, 1, 4), library=library)
    assert list(later["product"].values) == [l2a_id(20), l2a_id(4, 2)]
    january = open_cube(TILE, "NDVI", mask=SPEC, last=date(2024, 1, 31), library=library)
    assert january.sizes["time"] == 2
    raw = open_cube(TILE, "NDVI", mask=None, library=library)["NDVI"]
    assert float(raw[1, 0, 0]) == pytest.approx(0.1234)  # the raw index is not masked
    assert layers


def test_composites_open_as_one_variable_per_statistic(library: Library) -> None:
    fill(library)
    instance = dg.DagsterInstance.ephemeral()
    for month in ("2024-01", "2024-02"):
        assert materialize(library, f"{month}|{TILE}", instance).success
    cube = open_cube(TILE, "NDVI", mask=SPEC, composites=True, library=library)
    assert sorted(cube.data_vars) == ["count", "max", "mean", "median"]
    assert [str(t)[:10] for t in cube["time"].values] == ["2024-01-01", "2024-02-01"]
    assert cube["count"].isel(x=0, y=0).values.tolist() == [1.0, 1.0]
    assert cube["count"].isel(x=1, y=0).values.tolist() == [2.0, 1.0]
    np.testing.assert_allclose(cube["median"].isel(x=1, y=0).values, [0.15, 0.3], rtol=1e-6)
    with rasterio.open(cube["median"]["path_median"].values[0]) as src:
        assert src.crs == CRS
    february = open_cube(
        TILE, "NDVI", mask=SPEC, composites=True, first=date(2024, 2, 1), library=library
    )
    assert february.sizes["time"] == 1
    only = open_cube(TILE, "NDVI", mask=SPEC, composites=True, statistics=("max",), library=library)
    assert list(only.data_vars) == ["max"]


def test_no_file_is_a_clear_error(library: Library) -> None:
    with pytest.raises(CubeError, match=r"no NDVI_CM001 file of 40KCB under .*INDICES/NDVI/40KCB"):
        open_cube(TILE, "NDVI", mask=SPEC, library=library)
    fill(library)
    with pytest.raises(CubeError, match="no NDVI CM001 composite of 40KCB"):
        open_cube(TILE, "NDVI", mask=SPEC, composites=True, library=library)
    with pytest.raises(CubeError, match="unknown statistic 'mode'"):
        open_cube(TILE, "NDVI", mask=SPEC, composites=True, statistics=("mode",), library=library)
