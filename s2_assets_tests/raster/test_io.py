"""Raster I/O: COG layout, lossless compression, nodata and scale, atomic publishing, JP2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from s2_assets.raster.io import BandReader, OutputFormat, RasterWriter, gdal_env
from s2_assets.raster.types import Grid, RasterError

CRS_WKT = rasterio.crs.CRS.from_epsg(32740).to_wkt()


def _grid(size: int) -> Grid:
    return Grid(size, size, Affine(10, 0, 300000, 0, -10, 7800040), CRS_WKT)


def _write(path: Path, values: np.ndarray, output: OutputFormat, rows: int = 7) -> int:
    with gdal_env(), RasterWriter(
        path, _grid(values.shape[0]), dtype=str(values.dtype), nodata=32767, output=output,
        scale=0.0001,
    ) as writer:  # fmt: skip
        for start in range(0, values.shape[0], rows):
            writer.write_rows(start, values[start : start + rows])
        assert not path.exists()  # nothing under the final name before publishing
        return writer.publish()


def test_cog_is_lossless_tiled_with_nodata_scale_and_overviews(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(-10000, 10001, (1100, 1100)).astype(np.int16)
    values[:5, :5] = 32767
    path = tmp_path / "x_NDVI.tif"
    size = _write(path, values, OutputFormat("tif", overview_resampling="AVERAGE"), rows=300)
    assert size == path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_NDVI.tif"]
    with rasterio.open(path) as src:
        structure = src.tags(ns="IMAGE_STRUCTURE")
        assert structure["LAYOUT"] == "COG"
        assert structure["COMPRESSION"] == "ZSTD" and structure["PREDICTOR"] == "2"
        assert src.block_shapes == [(512, 512)] and src.overviews(1) == [2, 4]
        assert src.nodata == 32767 and src.scales == (0.0001,) and src.offsets == (0.0,)
        assert src.crs.to_epsg() == 32740 and src.transform == _grid(1100).transform
        np.testing.assert_array_equal(src.read(1), values)


def test_failure_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "x.tif"
    with (
        pytest.raises(RuntimeError),
        RasterWriter(
            path, _grid(8), dtype="int16", nodata=32767, output=OutputFormat("tif")
        ) as writer,
    ):
        writer.write_rows(0, np.zeros((8, 8), np.int16))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_jp2_is_sen2chain_15_bit_lossy_with_sidecar(tmp_path: Path) -> None:
    values = (np.arange(64 * 64).reshape(64, 64) % 2000 - 1000).astype(np.int16)
    path = tmp_path / "x_NDVI.jp2"
    output = OutputFormat("jp2", jp2_quality=20)
    assert output.creation_options()["NBITS"] == "15"
    _write(path, values, output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_NDVI.jp2", "x_NDVI.jp2.aux.xml"]
    with rasterio.open(path) as src:
        assert src.driver == "JP2OpenJPEG" and src.dtypes == ("int16",)
        assert src.crs.to_epsg() == 32740
        error = np.abs(src.read(1).astype(int) - values)
        assert 0 < error.mean() < 200  # lossy, as sen2chain's


def test_lossless_jp2_masks(tmp_path: Path) -> None:
    values = (np.arange(48 * 48).reshape(48, 48) % 3).astype(np.uint8)
    values[values == 2] = 255
    path = tmp_path / "m.jp2"
    with (
        gdal_env(),
        RasterWriter(
            path, _grid(48), dtype="uint8", nodata=255, output=OutputFormat("jp2")
        ) as writer,
    ):
        writer.write_rows(0, values)
        writer.publish()
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(1), values)


def test_suffix_must_match_format(tmp_path: Path) -> None:
    with pytest.raises(RasterError, match=r"does not end in \.jp2"):
        RasterWriter(
            tmp_path / "a.tif", _grid(4), dtype="uint8", nodata=255, output=OutputFormat("jp2")
        )


def test_band_reader_reads_native_rows_and_names_bad_files(tmp_path: Path) -> None:
    scl = (np.arange(40 * 40).reshape(40, 40) % 12).astype(np.uint8)
    path = tmp_path / "SCL.jp2"
    with rasterio.open(
        path, "w", driver="JP2OpenJPEG", width=40, height=40, count=1, dtype="uint8",
        crs="EPSG:32740", transform=Affine(20, 0, 300000, 0, -20, 7800040), QUALITY=100,
        REVERSIBLE="YES", RESOLUTIONS=3,
    ) as dst:  # fmt: skip
        dst.write(scl, 1)
    with BandReader(path) as reader:
        assert reader.grid.width == 40 and reader.grid.resolution == 20
        np.testing.assert_array_equal(reader.read_rows(10, 30), scl[10:30])
    (tmp_path / "broken.jp2").write_bytes(b"not a jp2")
    with pytest.raises(RasterError, match=r"broken\.jp2"):
        BandReader(tmp_path / "broken.jp2")


def test_strips_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    with RasterWriter(
        tmp_path / "a.tif", _grid(8), dtype="uint8", nodata=255, output=OutputFormat("tif")
    ) as writer:
        for start, rows in ((0, np.zeros((0, 8), np.uint8)), (6, np.zeros((3, 8), np.uint8)),
                            (0, np.zeros((2, 7), np.uint8))):  # fmt: skip
            with pytest.raises(RasterError, match="does not fit"):
                writer.write_rows(start, rows)
