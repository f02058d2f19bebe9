"""Structure walks of JPEG 2000 and GeoTIFF files (s2_assets.library.integrity) on tiny real files
written by GDAL, damaged byte by byte the ways a copy, a download or a disk can damage them."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from s2_assets.library.integrity import image_problem, jp2_problem, product_problems, tiff_problem
from s2_assets.products import read_metadata
from s2_assets_tests.conftest import DemoSafes

SIDE, BLOCK = 128, 32  # a 4 x 4 grid of JPEG 2000 tiles (32 px is their least size)
TILES = (SIDE // BLOCK) ** 2
PROFILE = {
    "width": SIDE, "height": SIDE, "count": 1, "dtype": "uint16",
    "crs": CRS.from_epsg(32740), "transform": from_origin(300000.0, 7800000.0, 10.0, 10.0),
}  # fmt: skip


def _pixels() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(1, 4000, (SIDE, SIDE), dtype=np.uint16)


@pytest.fixture(scope="module")
def jp2(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("jp2") / "band.jp2"
    with rasterio.open(
        path, "w", driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES", blockxsize=BLOCK,
        blockysize=BLOCK, **PROFILE,
    ) as dst:  # fmt: skip
        dst.write(_pixels(), 1)
    return path.read_bytes()


def _jp2c(data: bytes) -> tuple[int, int]:
    """Offset of the jp2c box header and of its codestream (a test's own simple search)."""
    box = data.index(b"jp2c") - 4
    return box, box + 8


def _sot_offsets(data: bytes) -> list[int]:
    # Bit stuffing keeps FF90 out of packet data, so the marker and Lsot=10 find every SOT.
    offsets, start = [], 0
    while (found := data.find(b"\xff\x90\x00\x0a", start)) != -1:
        offsets.append(found)
        start = found + 1
    return offsets


def _with_box_length(data: bytes, delta: int) -> bytes:
    box, _ = _jp2c(data)
    (length,) = struct.unpack(">I", data[box : box + 4])
    return data[:box] + struct.pack(">I", length + delta) + data[box + 4 :]


def _drop_tile_part(data: bytes, index: int) -> bytes:
    sots = _sot_offsets(data)
    start, end = sots[index], sots[index + 1]
    return _with_box_length(data[:start] + data[end:], -(end - start))


def _bump_psot(data: bytes, index: int, delta: int) -> bytes:
    at = _sot_offsets(data)[index] + 6
    (psot,) = struct.unpack(">I", data[at : at + 4])
    return data[:at] + struct.pack(">I", psot + delta) + data[at + 4 :]


def _zero_lsot(data: bytes, index: int) -> bytes:
    at = _sot_offsets(data)[index] + 2
    return data[:at] + b"\0\0" + data[at + 2 :]


def _write(tmp_path: Path, data: bytes, name: str = "x.jp2") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_whole_jpeg2000_passes_and_has_one_tile_part_per_tile(jp2: bytes, tmp_path: Path) -> None:
    assert len(_sot_offsets(jp2)) == TILES
    assert jp2_problem(_write(tmp_path, jp2)) is None
    _, start = _jp2c(jp2)
    assert jp2_problem(_write(tmp_path, jp2[start:], "raw.j2k")) is None  # bare codestream


Damage = Callable[[bytes], bytes]


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda d: d[: len(d) // 2], r"truncated \(\d+ bytes, box b'jp2c' runs past the end\)"),
        (lambda d: d[:-2] + b"\0\0", r"incomplete codestream \(no end marker\)"),
        (lambda d: _drop_tile_part(d, 5), rf"incomplete codestream: 1 of {TILES} tiles missing \(first: tile 5\)"),
        (lambda d: _bump_psot(d, 3, 1), r"corrupt codestream: expected a tile-part \(SOT\) at byte \d+, found marker [0-9A-F]{4}"),
        (lambda d: _bump_psot(d, TILES - 1, 50), r"truncated codestream: tile-part of tile 15 at byte \d+ needs \d+ bytes, \d+ remain before the end marker"),
        (lambda d: _zero_lsot(d, 2), r"corrupt codestream: tile-part header at byte \d+ has Lsot=0, not 10"),
        (lambda d: d.replace(b"jp2h", b"jp2x", 1), r"codestream box before the jp2h header box"),
        (lambda d: d.replace(b"ftyp", b"ftyq", 1), r"no file type box after the signature"),
        (lambda d: b"\0\0\0\x0cjP  \r\n\x87\x0b" + d[12:], r"not a JPEG 2000 file \(bad signature box\)"),
        (lambda d: b"<html>404</html>", r"not a JPEG 2000 file"),
        (lambda d: b"", r"no codestream"),
    ],
    ids=["half", "no-eoc", "tile-part-dropped", "psot-off-by-one", "psot-past-end", "lsot", "no-jp2h",
         "no-ftyp", "bad-signature", "html", "empty"],
)  # fmt: skip
def test_damaged_jpeg2000_is_named(
    jp2: bytes, tmp_path: Path, damage: Damage, expected: str
) -> None:
    problem = jp2_problem(_write(tmp_path, damage(jp2)))
    assert problem is not None
    assert re.fullmatch(expected, problem), problem


def test_a_cut_codestream_with_its_end_marker_put_back_is_caught(
    jp2: bytes, tmp_path: Path
) -> None:
    # What a naive "first and last two bytes" check accepts: half the tiles, EOC re-added.
    sots = _sot_offsets(jp2)
    cut = jp2[: sots[TILES // 2]] + b"\xff\xd9"
    cut = _with_box_length(cut, len(cut) - len(jp2))
    assert jp2_problem(_write(tmp_path, cut)) == (
        f"incomplete codestream: {TILES // 2} of {TILES} tiles missing (first: tile {TILES // 2})"
    )


def test_missing_file() -> None:
    assert jp2_problem(Path("/nonexistent/x.jp2")) == "missing"
    assert tiff_problem(Path("/nonexistent/x.tif")) == "missing"


def _geotiff(path: Path, **options: object) -> bytes:
    with rasterio.open(path, "w", driver="GTiff", **{**PROFILE, **options}) as dst:
        dst.write(_pixels(), 1)
    return path.read_bytes()


@pytest.mark.parametrize(
    "options",
    [{}, {"TILED": "YES", "BLOCKXSIZE": 16, "BLOCKYSIZE": 16, "COMPRESS": "DEFLATE"},
     {"BIGTIFF": "YES", "TILED": "YES", "BLOCKXSIZE": 32, "BLOCKYSIZE": 32}],
    ids=["strips", "tiled-deflate", "bigtiff"],
)  # fmt: skip
def test_a_whole_geotiff_passes(tmp_path: Path, options: dict[str, object]) -> None:
    _geotiff(tmp_path / "x.tif", **options)
    assert tiff_problem(tmp_path / "x.tif") is None
    assert image_problem(tmp_path / "x.tif") is None


def test_damaged_geotiff_is_named(tmp_path: Path) -> None:
    data = _geotiff(tmp_path / "good.tif", TILED="YES", BLOCKXSIZE=16, BLOCKYSIZE=16)
    cut = _write(tmp_path, data[: len(data) - 100], "cut.tif")
    problem = tiff_problem(cut)
    assert problem is not None and problem.startswith(
        f"IFD 0: truncated ({len(data) - 100} bytes, tile "
    )
    assert tiff_problem(_write(tmp_path, data[:6], "stub.tif")) == "not a TIFF file"
    assert tiff_problem(_write(tmp_path, b"GIF89a" + data[6:], "gif.tif")) == "not a TIFF file"
    header = _write(tmp_path, data[:8] + b"\0" * 8, "no-ifd.tif")
    assert tiff_problem(header) == "IFD 0 has no entries"


def test_a_tiff_without_georeferencing_is_not_a_geotiff(tmp_path: Path) -> None:
    plain = tmp_path / "plain.tif"
    with rasterio.open(
        plain, "w", driver="GTiff", width=SIDE, height=SIDE, count=1, dtype="uint16"
    ) as dst:
        dst.write(_pixels(), 1)
    assert tiff_problem(plain) == "no GeoTIFF keys (GeoKeyDirectory) on the first image"


def test_product_whole_then_damaged_in_a_listed_band_and_an_unlisted_mask(
    demo_safes: DemoSafes, copy_safe: Callable[[Path], Path]
) -> None:
    safe = copy_safe(demo_safes.l2a_new)
    assert product_problems(safe, safe.name.removesuffix(".SAFE")) == []
    band = next(safe.glob("GRANULE/*/IMG_DATA/R10m/*_B04_10m.jp2"))
    band.write_bytes(band.read_bytes()[:-10])
    mask = next(safe.glob("GRANULE/*/QI_DATA/MSK_CLDPRB_20m.jp2"))
    mask.write_bytes(mask.read_bytes()[:-2] + b"\0\0")
    assert product_problems(safe) == [
        f"{band.relative_to(safe)}: truncated ({band.stat().st_size} bytes, box b'jp2c' runs past the end)",
        f"{mask.relative_to(safe)}: incomplete codestream (no end marker)",
    ]
    assert product_problems(safe, "S2B_OTHER")[0] == (
        f"metadata names {safe.name.removesuffix('.SAFE')}, not S2B_OTHER"
    )


def test_product_whose_images_are_geotiffs(
    demo_safes: DemoSafes, copy_safe: Callable[[Path], Path]
) -> None:
    # Sen2Cor --tif writes GeoTIFF images under the names the metadata lists.
    safe = copy_safe(demo_safes.l2a_new)
    for entry in read_metadata(safe).image_files[:3]:
        jp2_path = safe / f"{entry}.jp2"
        with rasterio.open(jp2_path) as src:
            profile, values = src.profile, src.read()
        profile.update(driver="GTiff", TILED="YES", BLOCKXSIZE=16, BLOCKYSIZE=16)
        with rasterio.open(safe / f"{entry}.tif", "w", **profile) as dst:
            dst.write(values)
        jp2_path.unlink()
    assert product_problems(safe) == []
    tif = safe / f"{read_metadata(safe).image_files[0]}.tif"
    tif.write_bytes(tif.read_bytes()[:200])
    problems = product_problems(safe)
    assert len(problems) == 1 and problems[0].startswith(f"{tif.relative_to(safe)}: ")
