"""20 m -> 10 m resampling: identical to GDAL's bilinear out_shape read, strip by strip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin

from s2_assets.raster.resample import (
    upsample2_bilinear,
    upsample2_bilinear_float32,
    upsample2_nearest,
    upsample2_touched,
)


def _gdal_upsampled(path: Path, array: np.ndarray, driver: str) -> np.ndarray:
    height, width = array.shape
    options = {"QUALITY": 100, "REVERSIBLE": "YES"} if driver == "JP2OpenJPEG" else {}
    with rasterio.open(
        path, "w", driver=driver, width=width, height=height, count=1, dtype=array.dtype,
        crs="EPSG:32740", transform=from_origin(300000, 7800040, 20, 20), **options,
    ) as dst:  # fmt: skip
        dst.write(array, 1)
    with rasterio.open(path) as src:
        return src.read(1, out_shape=(2 * height, 2 * width), resampling=Resampling.bilinear)


def _edge_padded(array: np.ndarray) -> np.ndarray:
    return np.pad(array, ((1, 1), (0, 0)), mode="edge")


@pytest.mark.parametrize(
    ("driver", "dtype", "high"),
    [("GTiff", "uint16", 65535), ("GTiff", "uint16", 4), ("JP2OpenJPEG", "uint16", 12000),
     ("GTiff", "uint8", 255)],
)  # fmt: skip
def test_equals_gdal_out_shape_bilinear(tmp_path: Path, driver: str, dtype: str, high: int) -> None:
    rng = np.random.default_rng(7)
    array = rng.integers(0, high + 1, (19, 27)).astype(dtype)
    expected = _gdal_upsampled(tmp_path / "band", array, driver)
    ours = upsample2_bilinear(_edge_padded(array))
    assert ours.dtype == array.dtype
    np.testing.assert_array_equal(ours, expected)


def test_reference_example_row() -> None:
    row = np.array([[2000, 3000]], dtype=np.uint16)
    assert upsample2_bilinear(_edge_padded(row))[0].tolist() == [2000, 2250, 2750, 3000]


def test_rounds_half_up() -> None:
    # Between 0 and 2 the 10 m pixels get 0.5 and 1.5: GDAL rounds both up (not to even).
    assert upsample2_bilinear(_edge_padded(np.array([[0, 2]], np.uint16)))[0].tolist() == [
        0,
        1,
        2,
        2,
    ]


@pytest.mark.parametrize("rows", [1, 2, 3, 5])
def test_strips_with_one_row_of_context_equal_the_whole(rows: int) -> None:
    rng = np.random.default_rng(3)
    array = rng.integers(0, 10000, (13, 9)).astype(np.uint16)
    whole = upsample2_bilinear(_edge_padded(array))
    padded = _edge_padded(array)
    parts = [upsample2_bilinear(padded[s : min(s + rows, 13) + 2]) for s in range(0, 13, rows)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_touched_marks_every_pixel_with_a_weight_on_the_source() -> None:
    zero = np.zeros((4, 4), dtype=bool)
    zero[1, 2] = True
    touched = upsample2_touched(_edge_padded(zero))
    # 20 m pixel (1, 2) feeds 10 m rows 1..4 and columns 3..6 (centre 2x2 plus one ring
    # toward each neighbour, weight 1/4 or less).
    assert np.argwhere(touched).min(axis=0).tolist() == [1, 3]
    assert np.argwhere(touched).max(axis=0).tolist() == [4, 6]
    assert int(touched.sum()) == 16
    weights = upsample2_bilinear(_edge_padded(zero.astype(np.uint16) * 16))
    assert ((weights > 0) == touched).all()


def test_nearest_repeats_each_pixel_two_by_two() -> None:
    mask = np.array([[1, 0], [0, 1]], dtype=np.uint8)
    assert upsample2_nearest(mask).tolist() == [
        [1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]
    ]  # fmt: skip


def test_float32_version_equals_the_integer_one() -> None:
    rng = np.random.default_rng(9)
    array = rng.integers(0, 65536, (31, 17)).astype(np.uint16)
    array[0, :4] = (0, 1, 65535, 65534)
    padded = _edge_padded(array)
    floats = upsample2_bilinear_float32(padded)
    assert floats.dtype == np.float32
    np.testing.assert_array_equal(floats, upsample2_bilinear(padded).astype(np.float32))


@pytest.mark.parametrize("offset", [-1000, 0, 37, -65535])
def test_float32_version_with_an_offset_equals_the_integer_one_plus_the_offset(
    offset: int,
) -> None:
    rng = np.random.default_rng(11)
    array = rng.integers(0, 65536, (29, 23)).astype(np.uint16)
    array[0, :6] = (0, 1, 65535, 65534, 0, 65535)
    array[-1, -3:] = (0, 65535, 0)
    padded = _edge_padded(array)
    floats = upsample2_bilinear_float32(padded, offset=offset)
    expected = upsample2_bilinear(padded).astype(np.float32) + np.float32(offset)
    assert floats.dtype == np.float32
    np.testing.assert_array_equal(floats, expected)
    assert not np.signbit(floats[floats == 0]).any()  # no -0.0 where the sum is zero
