"""The streaming COG writer (tiles compressed as strips arrive, the file assembled under
the driver's header) gives the very file GDAL's COG driver writes from a plain GeoTIFF
(overviews built by the driver itself), byte for byte, and a valid COG."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.shutil import copy as gdal_copy
from rio_cogeo.cogeo import cog_validate

from s2_assets.raster import cog_encode
from s2_assets.raster.io import COG_BLOCK, OutputFormat, RasterWriter, gdal_env
from s2_assets.raster.overviews import cog_levels
from s2_assets.raster.tiff_layout import put_values, tile_arrays
from s2_assets.raster.types import Grid, RasterError
from s2_assets.raster.zstd_tiles import TileCompressor

CRS_WKT = rasterio.crs.CRS.from_epsg(32740).to_wkt()


def _grid(width: int, height: int, crs_wkt: str = CRS_WKT) -> Grid:
    return Grid(width, height, Affine(10, 0, 300000, 0, -10, 7800040), crs_wkt)


def _reference(
    path: Path, values: np.ndarray, grid: Grid, nodata: int, scale: float | None
) -> bytes:
    """What the writer did before: an uncompressed tiled GeoTIFF, then the COG driver
    (which then builds the overviews itself), with GDAL's worker threads."""
    scratch = path.with_name("reference_scratch.tif")
    with rasterio.open(
        scratch, "w", driver="GTiff", width=grid.width, height=grid.height, count=1,
        dtype=str(values.dtype), crs=grid.crs_wkt or None, transform=grid.transform,
        nodata=nodata, tiled=True, blockxsize=COG_BLOCK, blockysize=COG_BLOCK,
    ) as dst:  # fmt: skip
        if scale is not None:
            dst.scales, dst.offsets = (scale,), (0.0,)
        dst.write(values, 1)
    options = {**OutputFormat("tif").creation_options(), "NUM_THREADS": "ALL_CPUS"}
    gdal_copy(str(scratch), str(path), driver="COG", **options)
    return path.read_bytes()


def _textured(shape: tuple[int, int], dtype: str, nodata: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "uint8":
        values = rng.integers(0, 2, shape).astype(np.uint8)
    elif dtype == "uint16":
        values = rng.integers(0, 400, shape).astype(np.uint16)  # composite counts
    else:
        values = (rng.normal(0, 3000, shape)).clip(-10000, 10000).astype(np.int16)
    values[: shape[0] // 7, : shape[1] // 5] = nodata
    return values


@pytest.mark.parametrize(
    ("width", "height", "dtype", "scale", "rows", "crs"),
    [
        (1100, 1100, "int16", 0.0001, 300, CRS_WKT),  # two levels, exact halvings
        (1374, 1374, "int16", 0.0001, 512, CRS_WKT),  # 687 -> 343: an uneven level
        (1301, 777, "int16", None, 7, CRS_WKT),  # odd, not square, thin strips
        (2061, 530, "uint8", None, 13, CRS_WKT),  # a mask; one side barely above a block
        (300, 200, "uint8", None, 64, ""),  # a single tile, no overviews, no CRS
        (1030, 700, "uint16", None, 100, CRS_WKT),  # a composite's count above 254 dates
    ],
)
def test_cog_bytes_equal_the_drivers_own(
    tmp_path: Path, width: int, height: int, dtype: str, scale: float | None, rows: int, crs: str
) -> None:
    nodata = {"uint8": 255, "uint16": 65535}.get(dtype, 32767)
    grid = _grid(width, height, crs)
    values = _textured((height, width), dtype, nodata, seed=width)
    path = tmp_path / "out.tif"
    with gdal_env():
        with RasterWriter(
            path, grid, dtype=dtype, nodata=nodata, output=OutputFormat("tif"), scale=scale
        ) as writer:
            # Strips arrive in any order, as far as the writer is concerned.
            starts = list(range(0, height, rows))
            for start in starts[1::2] + starts[::2]:
                writer.write_rows(start, values[start : start + rows])
            writer.publish()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]  # no scratch left
        expected = _reference(tmp_path / "reference.tif", values, grid, nodata, scale)
    assert path.read_bytes() == expected
    valid, errors, warnings = cog_validate(path, strict=True)
    assert valid and not errors and not warnings
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(1), values)


@pytest.mark.parametrize(("width", "height", "rows"), [(1374, 1100, 512), (1301, 777, 300)])
def test_variants_written_together_are_each_the_drivers_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, width: int, height: int, rows: int
) -> None:
    """A raw raster and masked variants (hidden pixels set to nodata) written as one group
    are each the driver's own file, and the tiles they share are compressed once."""
    raw = _textured((height, width), "int16", 32767, seed=7)
    hidden = np.zeros_like(raw, dtype=bool)
    hidden[100:180, 600:700] = True  # one cloud: a few tiles differ, in the image and levels
    hidden[-3:, -2:] = True  # the partial tile in the bottom right corner
    clear = raw.copy()  # a mask hiding nothing: every tile shared
    masked = np.where(hidden, np.int16(32767), raw)
    compressed = {"out0": 0, "out1": 0, "out2": 0}  # tiles compressed into each buffer
    original = TileCompressor._compress_band

    def counting(
        self: TileCompressor, values: np.ndarray, out_name: str, *, reuse: object
    ) -> object:
        tiles = original(self, values, out_name, reuse=reuse)  # type: ignore[arg-type]
        compressed[out_name] += sum(entry is None for entry in reuse) if reuse else len(tiles)
        return tiles

    monkeypatch.setattr(TileCompressor, "_compress_band", counting)
    grid = _grid(width, height)
    paths = [tmp_path / f"{name}.tif" for name in ("raw", "masked", "clear")]
    with gdal_env():
        writers = [
            RasterWriter(path, grid, dtype="int16", nodata=32767, output=OutputFormat("tif"))
            for path in paths
        ]
        for start in range(0, height, rows):
            stop = start + rows
            writers[0].write_rows(
                start,
                raw[start:stop],
                [(writers[1], masked[start:stop]), (writers[2], clear[start:stop])],
            )
        for writer in writers:
            writer.publish()
        for path, values in zip(paths, (raw, masked, clear), strict=True):
            expected = _reference(tmp_path / "reference.tif", values, grid, 32767, None)
            assert path.read_bytes() == expected, path.name
    if TileCompressor.load(level=1, block=COG_BLOCK) is not None:
        # Per band: the raw band's tiles, then only the masked variant's differing ones
        # (the clear variant's tiles are all shared).
        raw_tiles, masked_tiles, clear_tiles = compressed.values()
        assert clear_tiles == 0
        assert 0 < masked_tiles < raw_tiles


def test_strips_may_come_from_one_reused_buffer(tmp_path: Path) -> None:
    """The writer keeps no reference to a strip once ``write_rows`` returns (the index
    pipeline refills the same buffers for every strip)."""
    height, width, rows = 1100, 1301, 300
    raw = _textured((height, width), "int16", 32767, seed=11)
    masked = raw.copy()
    masked[::3] = 32767
    grid = _grid(width, height)
    paths = [tmp_path / "raw.tif", tmp_path / "masked.tif"]
    buffers = [np.empty((rows, width), np.int16) for _ in paths]
    with gdal_env():
        first, second = (
            RasterWriter(path, grid, dtype="int16", nodata=32767, output=OutputFormat("tif"))
            for path in paths
        )
        for start in range(0, height, rows):
            count = min(rows, height - start)
            for buffer, values in zip(buffers, (raw, masked), strict=True):
                buffer[:count] = values[start : start + count]
            first.write_rows(start, buffers[0][:count], [(second, buffers[1][:count])])
            for buffer in buffers:
                buffer.fill(-1)  # what a writer still holding the strip would now see
        for writer in (first, second):
            writer.publish()
        for path, values in zip(paths, (raw, masked), strict=True):
            assert path.read_bytes() == _reference(
                tmp_path / "reference.tif", values, grid, 32767, None
            ), path.name


def test_levels_follow_the_drivers_sizes() -> None:
    levels = cog_levels(10980, 10980, block=512)
    assert levels is not None
    assert [(lv.width, lv.height) for lv in levels] == [
        (5490, 5490), (2745, 2745), (1372, 1372), (686, 686), (343, 343),
    ]  # fmt: skip
    assert cog_levels(512, 512, block=512) == []
    assert cog_levels(2000, 1, block=512) is None  # the driver's own business


def test_thin_rasters_fall_back_to_the_driver(tmp_path: Path) -> None:
    values = np.arange(2000, dtype=np.int16).reshape(1, 2000)
    path = tmp_path / "thin.tif"
    with gdal_env(), RasterWriter(
        path, _grid(2000, 1), dtype="int16", nodata=32767, output=OutputFormat("tif")
    ) as writer:  # fmt: skip
        writer.write_rows(0, values)
        writer.publish()
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(1), values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thin.tif"]


def test_discard_removes_every_scratch_file(tmp_path: Path) -> None:
    writer = RasterWriter(
        tmp_path / "x.tif", _grid(1100, 1100), dtype="int16", nodata=32767,
        output=OutputFormat("tif"),
    )  # fmt: skip
    writer.write_rows(0, np.zeros((600, 1100), np.int16))
    # The image's first row of tiles compressed, its next 88 rows and both overview
    # levels' rows waiting for the rest of their bands.
    assert sorted(re.sub(r"\d+-[0-9a-f]{8}", "T", p.name) for p in tmp_path.iterdir()) == [
        ".x.tif.T-ovr1.scratch.raw", ".x.tif.T-ovr2.scratch.raw",
        ".x.tif.T.scratch.raw", ".x.tif.T.scratch.tiles",
    ]  # fmt: skip
    writer.discard()
    assert list(tmp_path.iterdir()) == []


def test_the_gdal_compression_path_gives_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the direct libzstd path is not trusted, GDAL's GeoTIFF writer compresses the
    tiles: the same bytes again."""
    monkeypatch.setattr(cog_encode, "_FAST", {})
    monkeypatch.setattr(TileCompressor, "load", classmethod(lambda cls, **kw: None))
    grid = _grid(1374, 1000)
    values = _textured((1000, 1374), "int16", 32767, seed=3)
    path = tmp_path / "out.tif"
    with gdal_env():
        with RasterWriter(
            path, grid, dtype="int16", nodata=32767, output=OutputFormat("tif"), scale=0.0001
        ) as writer:  # fmt: skip
            for start in range(0, 1000, 300):
                writer.write_rows(start, values[start : start + 300])
            writer.publish()
        expected = _reference(tmp_path / "reference.tif", values, grid, 32767, 0.0001)
    assert path.read_bytes() == expected
    assert cog_encode._FAST == {("int16", "1", COG_BLOCK): None}


@pytest.mark.parametrize("dtype", ["int16", "uint8", "uint16"])
def test_direct_compression_equals_gdals(dtype: str) -> None:
    compressor = TileCompressor.load(level=1, block=COG_BLOCK)
    if compressor is None:
        pytest.skip("no single libzstd mapped into this process")
    gdal = cog_encode.gdal_encoder(
        OutputFormat("tif").creation_options(), nodata=0, block=COG_BLOCK
    )
    for seed, shape in enumerate([(512, 1100), (77, 513), (512, 512), (1, 3)]):
        band = _textured(shape, dtype, 0, seed=seed)
        assert cog_encode._collect(compressor.encode, band) == cog_encode._collect(gdal, band)


def test_full_resolution_rows_never_go_to_an_uncompressed_scratch(tmp_path: Path) -> None:
    """Strips on 512-row boundaries are compressed as they come: no raw copy of the image
    is written and read back, only rows of the overview levels wait for their band."""
    writer = RasterWriter(
        tmp_path / "x.tif", _grid(1100, 1100), dtype="int16", nodata=32767,
        output=OutputFormat("tif"),
    )  # fmt: skip
    writer.write_rows(0, np.zeros((512, 1100), np.int16))
    writer.write_rows(512, np.zeros((512, 1100), np.int16))
    names = sorted(re.sub(r"\d+-[0-9a-f]{8}", "T", p.name) for p in tmp_path.iterdir())
    assert ".x.tif.T.scratch.raw" not in names
    assert ".x.tif.T.scratch.tiles" in names
    writer.discard()


def test_rows_waiting_for_their_band_reuse_one_band_of_scratch(tmp_path: Path) -> None:
    """Strips off the tile grid leave rows waiting for the rest of their band; in-order
    strips never need more than one band of raw scratch per layer, however tall."""
    height, width = 3000, 1100
    writer = RasterWriter(
        tmp_path / "x.tif", _grid(width, height), dtype="int16", nodata=32767,
        output=OutputFormat("tif"),
    )  # fmt: skip
    largest = 0
    for start in range(0, height, 300):
        writer.write_rows(start, np.ones((min(300, height - start), width), np.int16))
        raw = [p for p in tmp_path.iterdir() if re.search(r"-[0-9a-f]{8}\.scratch\.raw$", p.name)]
        largest = max([largest, *(p.stat().st_size for p in raw)])
    assert 0 < largest <= COG_BLOCK * width * 2
    writer.discard()


def test_rows_written_twice_or_never_are_errors(tmp_path: Path) -> None:
    with gdal_env(), RasterWriter(
        tmp_path / "x.tif", _grid(1100, 700), dtype="int16", nodata=32767,
        output=OutputFormat("tif"),
    ) as writer:  # fmt: skip
        writer.write_rows(0, np.zeros((300, 1100), np.int16))
        with pytest.raises(RasterError, match=r"rows 200\.\.500 written twice"):
            writer.write_rows(200, np.zeros((300, 1100), np.int16))
        with pytest.raises(RasterError, match="400 of 700 rows were never written"):
            writer.publish()
    assert list(tmp_path.iterdir()) == []


def test_tile_arrays_read_and_set_a_gdal_cog(tmp_path: Path) -> None:
    values = _textured((700, 1100), "uint8", 255, seed=5)
    path = tmp_path / "ref.tif"
    with gdal_env():
        data = _reference(path, values, _grid(1100, 700), 255, None)
    order, ifds = tile_arrays(data)
    assert order == "<"
    # 3 x 2 tiles, then 2 x 1 (550 px), then one (275 px: its arrays inside the entry)
    assert [arrays.offsets.count for arrays in ifds] == [6, 2, 1]
    for arrays in ifds:
        counts = struct.unpack_from(
            f"<{arrays.byte_counts.count}{arrays.byte_counts.code}", data,
            arrays.byte_counts.position,
        )  # fmt: skip
        for offset, count in zip(arrays.offset_values, counts, strict=True):
            assert struct.unpack_from("<I", data, offset - 4) == (count,)  # GDAL's leader
    header = bytearray(data[:64])
    with pytest.raises(RasterError, match="3 tiles for a TIFF array of 6"):
        put_values(bytearray(data), order, ifds[0].offsets, [1, 2, 3])
    with pytest.raises(RasterError, match="does not fit"):
        put_values(bytearray(data), order, ifds[0].offsets, [1 << 32] * 6)
    with pytest.raises(RasterError, match="not a TIFF"):
        tile_arrays(b"GIF89a" + bytes(header))
