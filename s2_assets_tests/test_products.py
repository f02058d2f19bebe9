"""Product names, tile ids and product metadata XML (s2_assets.products)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from s2_assets.errors import MetadataError, ProductNameError, TileIdError
from s2_assets.products import (
    BANDS,
    ProductName,
    band_path,
    qi_path,
    read_metadata,
    tile_epsg,
    validate_tile_id,
)
from s2_assets_tests.conftest import SENSING, DemoSafes

MODERN = "S2B_MSIL1C_20230101T063141_N0509_R134_T40KCB_20230101T082030"
LEGACY = "S2A_OPER_PRD_MSIL1C_PDMC_20160107T212946_R051_V20160107T063445_20160107T063445"


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "text",
    [MODERN, f"{MODERN}.SAFE", f"{MODERN}.zip", f"/data/L1C/40KCB/{MODERN}.SAFE/", MODERN.lower()],
)
def test_modern_name_fields_and_round_trip(text: str) -> None:
    name = ProductName.parse(text)
    assert name.id == MODERN
    assert name.safe_name == f"{MODERN}.SAFE"
    assert name.mission == "S2B"
    assert name.level == "L1C"
    assert name.sensing == datetime(2023, 1, 1, 6, 31, 41, tzinfo=UTC)
    assert name.sensing.utcoffset() is not None and name.sensing.utcoffset().total_seconds() == 0
    assert name.baseline == "05.09"
    assert name.relative_orbit == 134
    assert name.tile == "40KCB"
    assert name.discriminator == "20230101T082030"
    assert name.date == date(2023, 1, 1)
    assert name.legacy_name is None
    assert name.family == "20230101T063141_N0509_R134_T40KCB_20230101T082030"
    assert ProductName.parse(name.id) == name


def test_modern_as_level_keeps_everything_but_the_level() -> None:
    l2a = ProductName.parse(MODERN).as_level("L2A")
    assert l2a.id == "S2B_MSIL2A_20230101T063141_N0509_R134_T40KCB_20230101T082030"
    assert l2a.level == "L2A"
    assert l2a.family == ProductName.parse(MODERN).family
    assert ProductName.parse(l2a.id) == l2a


def test_legacy_name_fields_and_round_trip() -> None:
    name = ProductName.parse(f"{LEGACY}.SAFE")
    assert name.id == LEGACY
    assert name.mission == "S2A"
    assert name.level == "L1C"
    # Legacy names: the sensing time is the V<...> stamp, the first stamp is the generation.
    assert name.sensing == datetime(2016, 1, 7, 6, 34, 45, tzinfo=UTC)
    assert name.date == date(2016, 1, 7)
    assert name.discriminator == "20160107T212946"
    assert name.relative_orbit == 51
    assert name.baseline is None
    assert name.tile is None
    assert ProductName.parse(name.id).id == LEGACY


def test_legacy_as_level_switches_oper_to_user() -> None:
    l2a = ProductName.parse(LEGACY).as_level("L2A")
    assert l2a.id == (
        "S2A_USER_PRD_MSIL2A_PDMC_20160107T212946_R051_V20160107T063445_20160107T063445"
    )
    assert l2a.level == "L2A"
    assert ProductName.parse(l2a.id).level == "L2A"


def test_as_level_rejects_unknown_level() -> None:
    with pytest.raises(ProductNameError, match=r"'L3'.*L1C, L2A"):
        ProductName.parse(MODERN).as_level("L3")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "hello.SAFE",
        "S2A_MSIL1C_20240101T063511_N0510_R120_T40KCB",  # no discriminator
        "S2E_MSIL1C_20240101T063511_N0510_R120_T40KCB_20240101T083400",  # no such mission
        "S2A_MSIL3A_20240101T063511_N0510_R120_T40KCB_20240101T083400",  # no such level
        "S2A_MSIL1C_20240101T063511_N510_R120_T40KCB_20240101T083400",  # baseline digits
    ],
)
def test_bad_names_name_the_value(bad: str) -> None:
    with pytest.raises(ProductNameError) as info:
        ProductName.parse(bad)
    assert repr(bad) in str(info.value)
    assert "S2A_MSIL1C_20240101T063511_N0510_R120_T40KCB_20240101T083400" in str(info.value)


def test_impossible_sensing_date_names_the_product() -> None:
    bad = "S2A_MSIL1C_20241301T063511_N0510_R120_T40KCB_20240101T083400"
    with pytest.raises(ProductNameError, match="'20241301T063511'") as info:
        ProductName.parse(bad)
    assert repr(bad) in str(info.value)


def test_bad_tile_in_a_name_names_the_product_and_the_tile() -> None:
    bad = "S2A_MSIL1C_20240101T063511_N0510_R120_T40KIB_20240101T083400"
    with pytest.raises(ProductNameError) as info:
        ProductName.parse(bad)
    assert repr(bad) in str(info.value)
    assert "'40KIB'" in str(info.value)


def test_names_sort_by_sensing_time() -> None:
    later = ProductName.parse("S2A_MSIL1C_20240102T063511_N0510_R120_T40KCB_20240102T083400")
    earlier = ProductName.parse("S2B_MSIL1C_20240101T063511_N0510_R120_T40KCB_20240101T083400")
    assert sorted([later, earlier]) == [earlier, later]


# ----------------------------------------------------------------------------- tile ids


@pytest.mark.parametrize("tile", ["40KCB", "31UFS", "01CAA", "60WWU", "02DJA", "03MSV", "33TWN"])
def test_valid_tile_ids(tile: str) -> None:
    assert validate_tile_id(tile) == tile


def test_tile_id_is_stripped() -> None:
    assert validate_tile_id(" 40KCB\n") == "40KCB"


@pytest.mark.parametrize(
    ("tile", "why"),
    [
        ("00KCB", "UTM zone must be 01..60"),
        ("61KCB", "UTM zone must be 01..60"),
        ("40ICB", "latitude band must be one of CDEFGHJKLMNPQRSTUVWX"),
        ("40OCB", "latitude band must be one of CDEFGHJKLMNPQRSTUVWX"),
        ("40ACB", "latitude band must be one of CDEFGHJKLMNPQRSTUVWX"),
        ("40YCB", "latitude band must be one of CDEFGHJKLMNPQRSTUVWX"),
        # Zone 40 uses column letters A..H; J..R belong to zones 2, 5, ..., S..Z to 3, 6, ...
        ("40KJB", "in zone 40 the 100 km column letter must be one of ABCDEFGH"),
        ("41KCB", "in zone 41 the 100 km column letter must be one of JKLMNPQR"),
        ("42KCB", "in zone 42 the 100 km column letter must be one of STUVWXYZ"),
        ("40KCW", "the 100 km row letter must be one of ABCDEFGHJKLMNPQRSTUV"),
        ("40KCI", "the 100 km row letter must be one of ABCDEFGHJKLMNPQRSTUV"),
        ("4KCB", "expected two digits and three letters, like 40KCB"),
        ("40KCBB", "expected two digits and three letters, like 40KCB"),
        ("", "expected two digits and three letters, like 40KCB"),
    ],
)
def test_invalid_tile_ids_say_why(tile: str, why: str) -> None:
    with pytest.raises(TileIdError) as info:
        validate_tile_id(tile)
    assert str(info.value) == f"invalid tile id {tile!r}: {why}"


def test_lowercase_tile_id_hints_upper_case() -> None:
    with pytest.raises(TileIdError) as info:
        validate_tile_id("40kcb")
    assert str(info.value) == (
        "invalid tile id '40kcb': expected two digits and three letters, like 40KCB "
        "(tile ids are upper case: '40KCB')"
    )


@pytest.mark.parametrize("tile", ["T40KCB", "t40kcb"])
def test_leading_t_hints_the_bare_tile(tile: str) -> None:
    with pytest.raises(TileIdError, match=r"drop the leading 'T': '40KCB'"):
        validate_tile_id(tile)


@pytest.mark.parametrize(
    ("tile", "epsg"),
    [("40KCB", 32740), ("31UFS", 32631), ("01CAA", 32701), ("60WWU", 32660), ("33NTA", 32633),
     ("33MTA", 32733)],
)  # fmt: skip
def test_tile_epsg_north_and_south(tile: str, epsg: int) -> None:
    assert tile_epsg(tile) == epsg


def test_tile_epsg_rejects_bad_tile() -> None:
    with pytest.raises(TileIdError):
        tile_epsg("40ZCB")


# ----------------------------------------------------------------------------- metadata


def test_metadata_l1c_before_04_has_no_offsets(demo_safes: DemoSafes) -> None:
    meta = read_metadata(demo_safes.l1c_old)
    assert meta.product_uri == demo_safes.l1c_old.name.removesuffix(".SAFE")
    assert meta.level == "L1C"
    assert meta.processing_baseline == "03.01"
    assert meta.offsets == {}
    assert meta.offset("B04") == 0
    assert meta.quantification == 10000
    assert meta.spacecraft == "Sentinel-2A"
    assert meta.sensing_start == SENSING.replace(microsecond=24000)


def test_metadata_l1c_after_04_has_radio_offsets(demo_safes: DemoSafes) -> None:
    meta = read_metadata(demo_safes.l1c_new)
    assert meta.processing_baseline == "05.09"
    assert meta.offsets == dict.fromkeys(BANDS, -1000)
    assert meta.offset("B8A") == -1000
    assert meta.quantification == 10000


def test_metadata_l2a_before_and_after_04(demo_safes: DemoSafes) -> None:
    old = read_metadata(demo_safes.l2a_old)
    new = read_metadata(demo_safes.l2a_new)
    assert (old.level, new.level) == ("L2A", "L2A")
    assert old.offsets == {}
    assert new.offsets == dict.fromkeys(BANDS, -1000)
    assert old.quantification == new.quantification == 10000


@pytest.mark.parametrize("which", ["l1c_old", "l1c_new", "l2a_old", "l2a_new"])
def test_metadata_cloud_cover_matches_the_scl_share(demo_safes: DemoSafes, which: str) -> None:
    cloud = read_metadata(getattr(demo_safes, which)).cloud_cover
    # 35 % was asked for; a 12 px scene can only approach it by whole pixels.
    assert cloud is not None and 30.0 <= cloud <= 40.0
    # L1C and L2A of one acquisition describe one scene.
    assert cloud == read_metadata(demo_safes.l1c_old).cloud_cover


def test_image_file_l1c(demo_safes: DemoSafes) -> None:
    safe = demo_safes.l1c_new
    meta = read_metadata(safe)
    granule = next((safe / "GRANULE").iterdir()).name
    assert meta.image_file("B04") == f"GRANULE/{granule}/IMG_DATA/T40KCB_20220130T063511_B04"
    assert meta.image_file("B8A").endswith("_B8A")
    assert len(meta.image_files) == 14  # 13 bands and the TCI
    for band in BANDS:
        assert band_path(safe, meta, band).is_file()


def test_image_file_l2a_native_and_chosen_resolution(demo_safes: DemoSafes) -> None:
    safe = demo_safes.l2a_new
    meta = read_metadata(safe)
    granule = next((safe / "GRANULE").iterdir()).name
    assert meta.image_file("B04") == (
        f"GRANULE/{granule}/IMG_DATA/R10m/T40KCB_20220130T063511_B04_10m"
    )
    assert meta.image_file("B11").endswith("/R20m/T40KCB_20220130T063511_B11_20m")
    assert meta.image_file("SCL").endswith("/R20m/T40KCB_20220130T063511_SCL_20m")
    assert meta.image_file("B04", 60).endswith("/R60m/T40KCB_20220130T063511_B04_60m")
    assert band_path(safe, meta, "SCL", 60).is_file()
    assert band_path(safe, meta, "B02").is_file()
    assert qi_path(safe, "MSK_CLDPRB_20m.jp2").is_file()


def test_image_file_missing_names_product_and_band(demo_safes: DemoSafes) -> None:
    meta = read_metadata(demo_safes.l2a_new)
    with pytest.raises(MetadataError) as info:
        meta.image_file("B10")  # L2A products carry no cirrus band
    assert str(info.value) == f"{meta.product_uri}: no image B10 listed in MTD_MSIL2A.xml"
    with pytest.raises(MetadataError, match="no image B08 at 20 m"):
        meta.image_file("B08", 20)


def test_qi_path_missing_names_product(demo_safes: DemoSafes) -> None:
    with pytest.raises(MetadataError, match=rf"{demo_safes.l1c_old.name}: no GRANULE"):
        qi_path(demo_safes.l1c_old, "MSK_CLDPRB_20m.jp2")


def test_missing_mtd_names_product(
    demo_safes: DemoSafes, copy_safe: Callable[[Path], Path]
) -> None:
    safe = copy_safe(demo_safes.l2a_new)
    (safe / "MTD_MSIL2A.xml").unlink()
    with pytest.raises(MetadataError) as info:
        read_metadata(safe)
    assert str(info.value).startswith(f"{safe.name}: no MTD_MSIL1C.xml or MTD_MSIL2A.xml")


def test_malformed_mtd_names_product_and_file(
    demo_safes: DemoSafes, copy_safe: Callable[[Path], Path]
) -> None:
    safe = copy_safe(demo_safes.l1c_new)
    mtd = safe / "MTD_MSIL1C.xml"
    mtd.write_bytes(mtd.read_bytes()[:500])  # truncated mid-element
    with pytest.raises(MetadataError) as info:
        read_metadata(safe)
    assert str(info.value).startswith(f"{safe.name}/MTD_MSIL1C.xml: not well-formed XML")


def test_mtd_without_baseline_names_what_is_missing(
    demo_safes: DemoSafes, copy_safe: Callable[[Path], Path]
) -> None:
    safe = copy_safe(demo_safes.l2a_old)
    mtd = safe / "MTD_MSIL2A.xml"
    text = mtd.read_text().replace("<PROCESSING_BASELINE>03.01</PROCESSING_BASELINE>", "")
    mtd.write_text(text)
    with pytest.raises(MetadataError) as info:
        read_metadata(safe)
    assert str(info.value) == f"{safe.name}/MTD_MSIL2A.xml: missing PROCESSING_BASELINE"


def test_mtd_with_unreadable_value_names_it(
    demo_safes: DemoSafes, copy_safe: Callable[[Path], Path]
) -> None:
    safe = copy_safe(demo_safes.l2a_new)
    mtd = safe / "MTD_MSIL2A.xml"
    text = mtd.read_text()
    start = text.index("<Cloud_Coverage_Assessment>") + len("<Cloud_Coverage_Assessment>")
    end = text.index("</Cloud_Coverage_Assessment>")
    mtd.write_text(text[:start] + "lots" + text[end:])
    with pytest.raises(MetadataError, match=rf"^{safe.name}/MTD_MSIL2A.xml: unreadable value"):
        read_metadata(safe)


def test_unreadable_mtd_names_product(
    demo_safes: DemoSafes, monkeypatch: pytest.MonkeyPatch
) -> None:
    safe = demo_safes.l2a_new
    real_read_bytes = Path.read_bytes

    def refuse(path: Path) -> bytes:
        if path.name == "MTD_MSIL2A.xml":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_bytes(path)

    # Tests run as root on CI, where chmod cannot make a file unreadable.
    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(MetadataError) as info:
        read_metadata(safe)
    assert str(info.value).startswith(f"{safe.name}: cannot read MTD_MSIL2A.xml (")
    assert "Permission denied" in str(info.value)


def test_mtd_folder_instead_of_file_is_no_mtd(
    demo_safes: DemoSafes, copy_safe: Callable[[Path], Path]
) -> None:
    safe = copy_safe(demo_safes.l2a_new)
    mtd = safe / "MTD_MSIL2A.xml"
    mtd.unlink()
    mtd.mkdir()
    with pytest.raises(MetadataError, match=rf"^{safe.name}: no MTD_MSIL1C.xml or MTD_MSIL2A.xml"):
        read_metadata(safe)
