"""The local archive provider (s2_assets.providers.archive): EODC's dated layout, searches
that only touch the window's day folders, cloud cover from the zip, fetch in place."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from s2_assets.demo.products import DEMO_PRODUCTS, product_name
from s2_assets.errors import MetadataError, ProviderError
from s2_assets.library.tree import Library
from s2_assets.products import ProductName, read_metadata
from s2_assets.providers.archive import (
    DEFAULT_TEMPLATE,
    ArchiveProvider,
    read_zip_cloud_cover,
    validate_template,
)
from s2_assets.providers.base import ProductRecord
from s2_assets_tests.conftest import DemoArchive

JAN_20 = "S2A_MSIL1C_20220120T063511_N0301_R120_T40KCB_20220120T083511"


def test_path_for_is_eodcs_layout(tmp_path: Path) -> None:
    archive = ArchiveProvider(tmp_path)
    name = ProductName.parse("S2B_MSIL2A_20240101T063511_N0510_R120_T40KCB_20240101T083511")
    assert archive.path_for(name) == (tmp_path / "s2b_prd_msil2a/2024/01/01" / f"{name.id}.zip")
    assert DEFAULT_TEMPLATE == "{platform}_prd_msi{level}/{yyyy}/{mm}/{dd}/{name}.zip"


def test_search_finds_the_windows_products(demo_archive: DemoArchive) -> None:
    archive = ArchiveProvider(demo_archive.root)
    found = archive.search("40KCB", "L1C", date(2022, 1, 20), date(2022, 1, 30))
    expected = sorted(
        product_name(p).id
        for p in DEMO_PRODUCTS
        if p.level == "L1C" and p.tile == "40KCB" and p.sensing.date() <= date(2022, 1, 30)
    )
    assert sorted(r.product_id for r in found) == expected
    assert len(found) == 4  # 20th, 25th, and the 30th under two baselines
    first = next(r for r in found if r.product_id == JAN_20)
    zip_path = demo_archive.root / "s2a_prd_msil1c/2022/01/20" / f"{JAN_20}.zip"
    assert first == ProductRecord(
        product_id=JAN_20,
        level="L1C",
        tile="40KCB",
        sensing_time=datetime(2022, 1, 20, 6, 35, 11, tzinfo=UTC),
        cloud_cover=first.cloud_cover,
        baseline="03.01",
        provider="archive",
        location=str(zip_path),
        size=zip_path.stat().st_size,
        online=True,
    )
    assert {r.baseline for r in found if r.date == date(2022, 1, 30)} == {"04.00", "05.09"}


@pytest.mark.parametrize(
    ("tile", "level", "start", "end", "count"),
    [
        ("40KCB", "L2A", "2022-01-20", "2022-02-04", 5),
        ("40KCB", "L1C", "2022-01-21", "2022-01-24", 0),
        ("40KCB", "L1C", "2022-01-25", "2022-01-25", 1),
        ("40KCB", "L1C", "2022-02-04", "2022-02-04", 1),
        ("31UFS", "L1C", "2022-01-01", "2022-12-31", 3),
        ("31UFS", "L2A", "2022-01-23", "2022-01-31", 1),
        ("33TWN", "L1C", "2022-01-01", "2022-02-28", 0),
    ],
)
def test_search_by_tile_level_and_window(
    demo_archive: DemoArchive, tile: str, level: str, start: str, end: str, count: int
) -> None:
    found = ArchiveProvider(demo_archive.root).search(
        tile, level, date.fromisoformat(start), date.fromisoformat(end)
    )
    assert len(found) == count
    for record in found:
        assert (record.tile, record.level) == (tile, level)
        assert date.fromisoformat(start) <= record.date <= date.fromisoformat(end)


def _day_of(root: Path, path: Path) -> date | None:
    """The sensing day a path below the archive root belongs to, if it is that deep."""
    parts = path.relative_to(root).parts
    if len(parts) < 4:
        return None
    return date(int(parts[1]), int(parts[2]), int(parts[3]))


def test_search_touches_only_the_windows_day_folders(
    demo_archive: DemoArchive, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = demo_archive.root
    listed: list[Path] = []
    statted: list[Path] = []
    real_scandir, real_listdir, real_stat = os.scandir, os.listdir, os.stat

    def scandir(path: Any = ".") -> Any:
        listed.append(Path(path))
        return real_scandir(path)

    def listdir(path: Any = ".") -> list[str]:
        listed.append(Path(path))
        return real_listdir(path)

    def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        statted.append(Path(path))
        return real_stat(path, *args, **kwargs)

    def walk(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the archive must never be walked")

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "listdir", listdir)
    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "walk", walk)
    start, end = date(2022, 1, 24), date(2022, 1, 26)
    found = ArchiveProvider(root).search("40KCB", "L1C", start, end)
    monkeypatch.undo()

    assert [r.date for r in found] == [date(2022, 1, 25)]
    below_root = [p for p in listed + statted if p != root and root in p.parents]
    assert below_root, "the spy saw nothing: the test would pass vacuously"
    for path in below_root:
        day = _day_of(root, path)
        assert day is not None, f"touched {path}, above the day folders"
        assert start <= day <= end, f"touched {path}, outside the window"
    for path in listed:
        assert path != root and len(path.relative_to(root).parts) == 4, f"listed {path}"
    # Each day of the window is looked up once per mission, and nothing else.
    day_folders = {p for p in statted if p != root and len(p.relative_to(root).parts) == 4}
    assert len(day_folders) == 3 * 4


def test_search_ignores_files_that_are_not_products(
    demo_archive: DemoArchive, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    shutil.copytree(demo_archive.root / "s2a_prd_msil1c", root / "s2a_prd_msil1c")
    day = root / "s2a_prd_msil1c/2022/01/20"
    (day / "README_T40KCB_notes.zip").write_bytes(b"not a product")
    (day / f"{JAN_20}.zip.md5").write_text("abc")
    found = ArchiveProvider(root).search("40KCB", "L1C", date(2022, 1, 20), date(2022, 1, 20))
    assert [r.product_id for r in found] == [JAN_20]


def test_cloud_cover_is_read_from_the_zip(demo_archive: DemoArchive, tmp_path: Path) -> None:
    found = ArchiveProvider(demo_archive.root).search(
        "40KCB", "L2A", date(2022, 1, 1), date(2022, 2, 28)
    )
    asked = {product_name(p).id: p.cloud_cover for p in DEMO_PRODUCTS}
    lib = Library(tmp_path / "lib")
    for record in found:
        assert record.cloud_cover is not None
        # The demo scene approximates the requested share by whole 10 m pixels of a 12 px tile.
        assert abs(record.cloud_cover - asked[record.product_id]) < 5
    record = found[0]
    installed = lib.install_zip(Path(record.location), record.name)
    assert record.cloud_cover == read_metadata(installed).cloud_cover
    assert [r.cloud_cover for r in found] != [found[0].cloud_cover] * len(found)


def test_read_metadata_false_gives_none_without_opening_zips(
    demo_archive: DemoArchive, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "archive"
    shutil.copytree(demo_archive.root / "s2a_prd_msil1c", root / "s2a_prd_msil1c")
    # A zip that cannot be opened: with read_metadata off, search never notices.
    (root / "s2a_prd_msil1c/2022/01/20" / f"{JAN_20}.zip").write_bytes(b"cold on tape")
    tape = ArchiveProvider(root, name="eodc", read_metadata=False)
    found = tape.search("40KCB", "L1C", date(2022, 1, 20), date(2022, 1, 20))
    assert [(r.product_id, r.cloud_cover, r.provider) for r in found] == [(JAN_20, None, "eodc")]
    # With read_metadata on, the unreadable zip is still listed (cloud cover unknown) and
    # named in a warning: one bad file must not hide the rest of the tile.
    with caplog.at_level("WARNING"):
        found = ArchiveProvider(root).search("40KCB", "L1C", date(2022, 1, 20), date(2022, 1, 20))
    assert [(r.product_id, r.cloud_cover) for r in found] == [(JAN_20, None)]
    assert f"product zip {JAN_20}.zip: cannot read" in caplog.text


def test_read_zip_cloud_cover_names_the_zip(tmp_path: Path) -> None:
    bad = tmp_path / f"{JAN_20}.zip"
    bad.write_bytes(b"PK not really")
    with pytest.raises(MetadataError) as info:
        read_zip_cloud_cover(bad, ProductName.parse(JAN_20))
    assert str(info.value).startswith(
        f"product zip {bad.name}: cannot read {JAN_20}.SAFE/MTD_MSIL1C.xml ("
    )


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{platform}/{tile}/{name}.zip", r"'\{platform\}/\{tile\}/\{name\}\.zip' is invalid"),
        ("{platform}/{yyyy/{name}.zip", r"is invalid"),
        ("{platform}/{yyyy}/{name}.tar", r"must end with '\{name\}\.zip'"),
        ("{platform}/{yyyy}/{name}", r"must end with '\{name\}\.zip'"),
    ],
)
def test_bad_templates_are_rejected(tmp_path: Path, template: str, message: str) -> None:
    with pytest.raises(ProviderError, match=message) as info:
        ArchiveProvider(tmp_path, template=template)
    if "invalid" in message:
        assert "fields: {platform}, {level}, {yyyy}, {mm}, {dd}, {name}" in str(info.value)


def test_custom_template_without_platform(demo_archive: DemoArchive, tmp_path: Path) -> None:
    template = "MSI{level}/{yyyy}{mm}{dd}/{name}.zip"
    assert validate_template(template) == template
    flat = ArchiveProvider(tmp_path, template=template)
    for source in demo_archive.zips.values():
        target = flat.path_for(ProductName.parse(source.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    assert (tmp_path / "MSIl1c/20220130").is_dir()
    found = flat.search("40KCB", "L1C", date(2022, 1, 30), date(2022, 1, 30))
    # One folder holds every mission's zips: each product is listed once, not once per mission.
    assert sorted(r.baseline for r in found) == ["04.00", "05.09"]


def test_missions_limit_the_search(demo_archive: DemoArchive) -> None:
    only_a = ArchiveProvider(demo_archive.root, missions=("S2A",))
    found = only_a.search("40KCB", "L1C", date(2022, 1, 1), date(2022, 2, 28))
    assert found
    assert {r.product_id[:3] for r in found} == {"S2A"}


def test_search_without_root_is_a_provider_error(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match=rf"archive root {tmp_path / 'nowhere'} does not exist"):
        ArchiveProvider(tmp_path / "nowhere").search(
            "40KCB", "L1C", date(2022, 1, 1), date(2022, 1, 2)
        )


def test_fetch_is_in_place(demo_archive: DemoArchive, tmp_path: Path) -> None:
    archive = ArchiveProvider(demo_archive.root)
    record = archive.search("40KCB", "L1C", date(2022, 1, 20), date(2022, 1, 20))[0]
    work = tmp_path / "work"
    work.mkdir()
    fetched = archive.fetch(record, work)
    assert fetched == Path(record.location)
    assert fetched.stat().st_ino == Path(record.location).stat().st_ino
    assert list(work.iterdir()) == []


def test_fetch_of_a_vanished_zip_names_it(tmp_path: Path) -> None:
    record = ProductRecord(
        product_id=JAN_20,
        level="L1C",
        tile="40KCB",
        sensing_time=datetime(2022, 1, 20, 6, 35, 11, tzinfo=UTC),
        cloud_cover=None,
        baseline="03.01",
        provider="archive",
        location=str(tmp_path / f"{JAN_20}.zip"),
    )
    with pytest.raises(ProviderError) as info:
        ArchiveProvider(tmp_path).fetch(record, tmp_path)
    assert str(info.value) == (
        f"{JAN_20}: {tmp_path / f'{JAN_20}.zip'} is no longer in the archive archive"
    )
