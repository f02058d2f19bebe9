"""Synthetic SAFE products (s2_assets.demo.products): the real layout and names, JPEG2000 bands on the
tile's UTM grid at 10/20/60 m, SCL and cloud probability, offsets from baseline 04.00 on."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from s2_assets.demo.products import DEMO_PRODUCTS, DEMO_TILES, build_archive, build_safe, zip_safe
from s2_assets.products import NATIVE_RESOLUTION, ProductName, read_metadata
from s2_assets_tests.conftest import DEMO_SIZE, SENSING, DemoArchive, DemoSafes

STAMP = "20220130T063511"
UL_X, UL_Y_SOUTH, UL_Y_NORTH = 300000.0, 7_800_040.0, 4_000_020.0


def granule(safe: Path) -> Path:
    (only,) = (safe / "GRANULE").iterdir()
    return only


def read(path: Path) -> tuple[np.ndarray, dict[str, object]]:
    with rasterio.open(path) as src:
        return src.read(), {
            "crs": src.crs.to_epsg(),
            "transform": src.transform,
            "shape": (src.count, src.height, src.width),
            "dtype": src.dtypes[0],
            "driver": src.driver,
        }


def test_l1c_layout_names_and_grid(demo_safes: DemoSafes) -> None:
    safe = demo_safes.l1c_new
    name = ProductName.parse(safe.name)
    assert safe.name == "S2A_MSIL1C_20220130T063511_N0509_R120_T40KCB_20220130T083511.SAFE"
    folder = granule(safe)
    assert folder.name == f"L1C_T40KCB_A030120_{STAMP}"
    for item in ("MTD_MSIL1C.xml", "manifest.safe", "INSPIRE.xml", "DATASTRIP"):
        assert (safe / item).exists(), item
    assert (folder / "MTD_TL.xml").is_file()
    images = sorted(p.name for p in (folder / "IMG_DATA").iterdir())
    assert images == sorted(
        [f"T40KCB_{STAMP}_{band}.jp2" for band in NATIVE_RESOLUTION] + [f"T40KCB_{STAMP}_TCI.jp2"]
    )
    for band, resolution in NATIVE_RESOLUTION.items():
        data, info = read(folder / "IMG_DATA" / f"T40KCB_{STAMP}_{band}.jp2")
        pixels = DEMO_SIZE * 10 // resolution
        assert info["driver"] == "JP2OpenJPEG"
        assert info["crs"] == 32740  # 40K: south
        assert info["transform"] == rasterio.Affine(resolution, 0, UL_X, 0, -resolution, UL_Y_SOUTH)
        assert info["shape"] == (1, pixels, pixels)
        assert info["dtype"] == "uint16"
        assert data.max() > 0
    _, info = read(folder / "IMG_DATA" / f"T40KCB_{STAMP}_TCI.jp2")
    assert info["shape"] == (3, DEMO_SIZE, DEMO_SIZE)
    assert info["dtype"] == "uint8"
    assert name.level == "L1C"
    assert not (folder / "QI_DATA" / "MSK_CLDPRB_20m.jp2").exists()  # L2A only


def test_l2a_layers_per_resolution(demo_safes: DemoSafes) -> None:
    img = granule(demo_safes.l2a_new) / "IMG_DATA"
    layers = {
        res: sorted(p.name.split("_")[2] for p in (img / f"R{res}m").iterdir())
        for res in (10, 20, 60)
    }
    assert layers[10] == sorted(["B02", "B03", "B04", "B08", "AOT", "WVP", "TCI"])
    assert layers[20] == sorted(
        ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12", "AOT", "WVP",
         "SCL", "TCI"]
    )  # fmt: skip
    assert layers[60] == sorted([*layers[20], "B09"])
    for res in (10, 20, 60):
        for path in (img / f"R{res}m").iterdir():
            assert re.fullmatch(rf"T40KCB_{STAMP}_[A-Z0-9]{{3}}_{res}m\.jp2", path.name)
            _, info = read(path)
            pixels = DEMO_SIZE * 10 // res
            assert info["shape"][1:] == (pixels, pixels)
            assert info["transform"] == rasterio.Affine(res, 0, UL_X, 0, -res, UL_Y_SOUTH)
            assert info["crs"] == 32740


def test_scl_and_cloud_probability(demo_safes: DemoSafes) -> None:
    folder = granule(demo_safes.l2a_new)
    scl, info = read(folder / "IMG_DATA" / "R20m" / f"T40KCB_{STAMP}_SCL_20m.jp2")
    assert info["dtype"] == "uint8"
    assert set(np.unique(scl)) <= set(range(12))
    assert set(np.unique(scl)) & {8, 9}  # 35 % cloud asked: some cloud is there
    assert 0 in np.unique(scl)  # the no-data wedge at the swath edge
    probability, info = read(folder / "QI_DATA" / "MSK_CLDPRB_20m.jp2")
    assert info["dtype"] == "uint8"
    assert probability.max() <= 100
    # Cloud probability agrees with the SCL: cloudy pixels are likely, clear ones are not.
    cloudy = np.isin(scl, (8, 9))
    assert probability[cloudy].min() > probability[~cloudy & (scl != 0)].max() - 1
    assert (folder / "QI_DATA" / "MSK_CLDPRB_60m.jp2").is_file()


def test_offset_is_1000_dn_from_baseline_04(demo_safes: DemoSafes) -> None:
    old_folder, new_folder = granule(demo_safes.l2a_old), granule(demo_safes.l2a_new)
    old, _ = read(old_folder / "IMG_DATA" / "R10m" / f"T40KCB_{STAMP}_B04_10m.jp2")
    new, _ = read(new_folder / "IMG_DATA" / "R10m" / f"T40KCB_{STAMP}_B04_10m.jp2")
    valid = old > 0
    assert valid.any() and (~valid).any()
    # Same scene, so the same reflectance: DN = reflectance x 10000 - BOA_ADD_OFFSET (-1000).
    assert np.array_equal(
        new[valid].astype(int) - old[valid].astype(int), np.full(valid.sum(), 1000)
    )
    assert not new[~valid].any()  # no-data stays 0
    assert read_metadata(demo_safes.l2a_new).offset("B04") == -1000
    assert read_metadata(demo_safes.l2a_old).offset("B04") == 0


def test_classification_mask_only_from_baseline_04(demo_safes: DemoSafes) -> None:
    for safe, present in ((demo_safes.l1c_old, False), (demo_safes.l2a_old, False),
                          (demo_safes.l1c_new, True), (demo_safes.l2a_new, True)):  # fmt: skip
        mask = granule(safe) / "QI_DATA" / "MSK_CLASSI_B00.jp2"
        assert mask.is_file() == present, safe.name
    data, info = read(granule(demo_safes.l2a_new) / "QI_DATA" / "MSK_CLASSI_B00.jp2")
    assert info["shape"] == (3, DEMO_SIZE // 6, DEMO_SIZE // 6)
    assert set(np.unique(data)) <= {0, 1}


def test_northern_tile_grid(tmp_path: Path) -> None:
    safe = build_safe(tmp_path, level="L2A", tile="31UFS", sensing=SENSING, size=DEMO_SIZE)
    b04 = granule(safe) / "IMG_DATA" / "R10m" / f"T31UFS_{STAMP}_B04_10m.jp2"
    _, info = read(b04)
    assert info["crs"] == 32631
    assert info["transform"] == rasterio.Affine(10, 0, UL_X, 0, -10, UL_Y_NORTH)
    assert (
        "<HORIZONTAL_CS_CODE>EPSG:32631</HORIZONTAL_CS_CODE>"
        in (granule(safe) / "MTD_TL.xml").read_text()
    )


def test_manifest_lists_every_file_with_its_size(demo_safes: DemoSafes) -> None:
    safe = demo_safes.l1c_old
    text = (safe / "manifest.safe").read_text()
    pattern = r'size="(\d+)"><fileLocation locatorType="URL" href="\./([^"]+)"'
    listed = {href: int(size) for size, href in re.findall(pattern, text)}
    files = {
        p.relative_to(safe).as_posix(): p.stat().st_size
        for p in safe.rglob("*")
        if p.is_file() and p.name != "manifest.safe"
    }
    assert listed == files


def test_same_acquisition_same_scene(tmp_path: Path) -> None:
    first = build_safe(tmp_path / "a", level="L2A", sensing=SENSING, size=DEMO_SIZE, seed=3)
    second = build_safe(tmp_path / "b", level="L2A", sensing=SENSING, size=DEMO_SIZE, seed=3)
    other = build_safe(tmp_path / "c", level="L2A", sensing=SENSING, size=DEMO_SIZE, seed=4)
    scl = f"R20m/T40KCB_{STAMP}_SCL_20m.jp2"
    a, _ = read(granule(first) / "IMG_DATA" / scl)
    b, _ = read(granule(second) / "IMG_DATA" / scl)
    c, _ = read(granule(other) / "IMG_DATA" / scl)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_size_must_fit_all_three_grids(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="size must be a multiple of 6"):
        build_safe(tmp_path, level="L1C", sensing=SENSING, size=20)


def test_zip_safe_ships_like_the_archives(demo_safes: DemoSafes, tmp_path: Path) -> None:
    target = tmp_path / "out" / f"{demo_safes.l2a_old.stem}.zip"
    assert zip_safe(demo_safes.l2a_old, target) == target
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no .part left
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
        assert all(n.startswith(f"{demo_safes.l2a_old.name}/") for n in names)
        mtd = f"{demo_safes.l2a_old.name}/MTD_MSIL2A.xml"
        assert archive.read(mtd) == (demo_safes.l2a_old / "MTD_MSIL2A.xml").read_bytes()
    files = [p for p in demo_safes.l2a_old.rglob("*") if p.is_file()]
    assert len(names) == len(files)


def test_demo_archive_contents_and_layout(demo_archive: DemoArchive) -> None:
    assert len(demo_archive.zips) == len(DEMO_PRODUCTS) == 16
    assert {ProductName.parse(z.name).tile for z in demo_archive.zips.values()} == set(DEMO_TILES)
    levels = {ProductName.parse(z.name).level for z in demo_archive.zips.values()}
    assert levels == {"L1C", "L2A"}
    baselines = {ProductName.parse(z.name).baseline for z in demo_archive.zips.values()}
    assert {"03.01", "04.00", "05.09"} <= baselines  # both sides of 04.00, and a reprocessing
    for product_id, path in demo_archive.zips.items():
        name = ProductName.parse(product_id)
        assert path.relative_to(demo_archive.root).as_posix() == (
            f"{name.mission.lower()}_prd_msi{name.level.lower()}/{name.sensing:%Y/%m/%d}/"
            f"{product_id}.zip"
        )


def test_build_archive_keeps_what_is_there(tmp_path: Path) -> None:
    products = [p for p in DEMO_PRODUCTS if p.tile == "31UFS" and p.level == "L1C"][:2]
    first = build_archive(tmp_path, products, size=DEMO_SIZE)
    times = [p.stat().st_mtime_ns for p in first]
    again = build_archive(tmp_path, products, size=DEMO_SIZE)
    assert again == first
    assert [p.stat().st_mtime_ns for p in again] == times
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # scratch gone
