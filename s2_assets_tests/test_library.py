"""The library on disk (s2_assets.library.tree): sen2chain's tree, an existing sen2chain library read
as it is, listing, atomic publish, and safe unzip that leaves nothing behind on bad input."""

from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from s2_assets.errors import ArchiveError, CorruptProductError, LibraryError
from s2_assets.library import tree as library_module
from s2_assets.library.tree import REASON_FILE, Library, directory_bytes
from s2_assets.products import ProductName, read_metadata
from s2_assets.settings import default_root
from s2_assets_tests.conftest import DemoArchive, DemoSafes, corrupt_member, rewrite_zip

L1C_ID = "S2A_MSIL1C_20220120T063511_N0301_R120_T40KCB_20220120T083511"
OTHER_ID = "S2A_MSIL1C_20220120T063511_N0301_R120_T40KCB_20220120T099999"


def l1c_zip(
    demo_archive: DemoArchive, day: str = "2022-01-20", baseline: str | None = None
) -> tuple[Path, ProductName]:
    product = demo_archive.find(level="L1C", tile="40KCB", day=day, baseline=baseline)
    path = demo_archive.zip_of(product)
    return path, ProductName.parse(path.name)


def assert_nothing_left(lib: Library, name: ProductName) -> None:
    """No product under its final name, an empty scratch area, and no file anywhere."""
    assert not lib.product_path(name).exists()
    assert list(lib.temp_dir.iterdir()) == []
    assert [p for p in lib.root.rglob("*") if not p.is_dir()] == []


# ----------------------------------------------------------------------------- tree


def test_tree_is_sen2chains(tmp_path: Path) -> None:
    root = tmp_path / "sen2chain_data"
    lib = Library(root)
    l1c = ProductName.parse(L1C_ID)
    l2a = l1c.as_level("L2A")
    assert lib.product_path(l1c) == root / "data" / "L1C" / "40KCB" / f"{L1C_ID}.SAFE"
    assert lib.product_path(l2a) == root / "data" / "L2A" / "40KCB" / f"{l2a.id}.SAFE"
    assert lib.level_dir("L2A", "31UFS") == root / "data" / "L2A" / "31UFS"
    assert lib.mask_dir("40KCB", l2a.id) == root / "data" / "CLOUDMASKS" / "40KCB" / l2a.id
    assert lib.index_dir("ndvi", "40KCB", l2a.id) == (
        root / "data" / "INDICES" / "NDVI" / "40KCB" / l2a.id
    )
    assert lib.temp_dir == root / "data" / "TEMP"
    assert lib.jobs_dir == root / "config" / "jobs"
    assert lib.logs_dir == root / "logs"
    assert lib.acquisitions_path("40KCB") == root / "data" / "ACQUISITIONS" / "40KCB.parquet"
    assert not root.exists()  # looking at a library creates nothing


def test_legacy_products_have_no_place_in_the_tree(library: Library) -> None:
    legacy = ProductName.parse(
        "S2A_OPER_PRD_MSIL1C_PDMC_20160107T212946_R051_V20160107T063445_20160107T063445"
    )
    with pytest.raises(LibraryError, match=r"S2A_OPER_PRD_MSIL1C_PDMC_20160107T212946.*multi-tile"):
        library.product_path(legacy)


def test_default_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("S2_DATA_HOME", str(tmp_path / "lib"))
    assert default_root() == tmp_path / "lib"
    monkeypatch.delenv("S2_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home" / "sen2chain_data"


def test_existing_sen2chain_library_is_read_as_it_is(tmp_path: Path, demo_safes: DemoSafes) -> None:
    root = tmp_path / "sen2chain_data"
    elsewhere = tmp_path / "big_disk" / "L1C"
    archive = tmp_path / "big_disk" / "L2A_ARCHIVE"
    (root / "config").mkdir(parents=True)
    # As sen2chain writes it: every section, some paths empty, one that does not exist.
    config = (
        "[DATA PATHS]\n"
        "temp_path = \n"
        f"l1c_path = {elsewhere}\n"
        f"l1c_archive_path = {tmp_path / 'big_disk' / 'L1C_ARCHIVE'}\n"
        "l2a_path = \n"
        f"l2a_archive_path = {archive}\n"
        f"indices_path = {tmp_path / 'gone'}\n"
        "time_series_path = \n"
        "temporal_summaries_path = \n"
        "cloudmasks_path = \n"
        "extraction_path = \n\n"
        "[SEN2COR PATH]\nsen2cor_bashrc_paths = \n\n"
        "[HUBS LOGINS]\nscihub_id = \nscihub_pwd = \npeps_config_path = \n\n"
        "[PROXY SETTINGS]\nproxy_http_url = \nproxy_https_url = \n\n"
        "[SEN2CHAIN VERSIONS]\nsen2chain_processing_version = xx.xx\n\n"
        "[LOG PATH]\nlog_path = \n"
    )
    (root / "config" / "config.cfg").write_text(config)
    # The L1C lives on the other disk; the L2A was archived: a symlink into the archive.
    shutil.copytree(demo_safes.l1c_old, elsewhere / "40KCB" / demo_safes.l1c_old.name)
    shutil.copytree(demo_safes.l2a_old, archive / "40KCB" / demo_safes.l2a_old.name)
    l2a_dir = root / "data" / "L2A" / "40KCB"
    l2a_dir.mkdir(parents=True)
    (l2a_dir / demo_safes.l2a_old.name).symlink_to(archive / "40KCB" / demo_safes.l2a_old.name)
    # What else sits in sen2chain tile folders: quicklooks, a stray file, a broken name.
    (l2a_dir / "QL").mkdir()
    (l2a_dir / "notes.txt").write_text("x")
    (l2a_dir / "S2A_MSIL2A_garbage.SAFE").mkdir()
    before = sorted(str(p) for p in tmp_path.rglob("*"))

    lib = Library(root)

    l1c = lib.products("L1C", "40KCB")
    assert [p.id for p in l1c] == [demo_safes.l1c_old.name.removesuffix(".SAFE")]
    assert l1c[0].path == elsewhere / "40KCB" / demo_safes.l1c_old.name
    l2a = lib.products("L2A", "40KCB")
    assert [p.path for p in l2a] == [l2a_dir / demo_safes.l2a_old.name]
    assert read_metadata(l2a[0].path).level == "L2A"  # read through the link
    assert lib.has_product(l2a[0].name)
    assert lib.has_product(l1c[0].name)
    assert lib.tiles("L1C") == ["40KCB"]
    assert lib.tiles("L2A") == ["40KCB"]
    # Empty or missing paths fall back to data/<KEY>, as in sen2chain.
    assert lib.index_dir("NDVI", "40KCB", "X") == root / "data" / "INDICES" / "NDVI" / "40KCB" / "X"
    assert lib.temp_dir == root / "data" / "TEMP"
    # Reading changed nothing (sen2chain rewrites its config; we do not).
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert (root / "config" / "config.cfg").read_text() == config


def test_unreadable_sen2chain_config_is_a_library_error(tmp_path: Path) -> None:
    config = tmp_path / "config" / "config.cfg"
    config.parent.mkdir(parents=True)
    config.write_text("l1c_path = /no/section\n")
    with pytest.raises(LibraryError, match=rf"{config}: unreadable sen2chain config"):
        Library(tmp_path)


# ----------------------------------------------------------------------------- listing


def test_products_filters_by_day_and_sorts(library: Library, demo_archive: DemoArchive) -> None:
    for day, baseline in [
        ("2022-01-30", "05.09"),
        ("2022-01-20", None),
        ("2022-01-30", "04.00"),
        ("2022-01-25", None),
    ]:
        path, name = l1c_zip(demo_archive, day, baseline)
        library.install_zip(path, name)
    every = library.products("L1C", "40KCB")
    assert [(p.name.date.isoformat(), p.name.baseline) for p in every] == [
        ("2022-01-20", "03.01"),
        ("2022-01-25", "04.00"),
        ("2022-01-30", "04.00"),
        ("2022-01-30", "05.09"),
    ]
    on_30 = library.products("L1C", "40KCB", date(2022, 1, 30))
    assert [p.name.baseline for p in on_30] == ["04.00", "05.09"]
    assert library.products("L1C", "40KCB", date(2022, 1, 21)) == []
    assert library.products("L2A", "40KCB") == []
    assert library.products("L1C", "31UFS") == []
    assert library.tiles("L1C") == ["40KCB"]
    assert library.tiles("L2A") == []


# ----------------------------------------------------------------------------- publish


def test_publish_new_product(library: Library) -> None:
    final = library.level_dir("L1C", "40KCB") / f"{L1C_ID}.SAFE"
    with library.scratch() as work:
        staged = work / "x.SAFE"
        staged.mkdir()
        (staged / "a").write_text("new")
        assert library.publish(staged, final) == final
        assert not staged.exists()
    assert (final / "a").read_text() == "new"
    assert list(library.temp_dir.iterdir()) == []


def test_publish_replaces_whole_product(library: Library) -> None:
    final = library.level_dir("L1C", "40KCB") / f"{L1C_ID}.SAFE"
    final.mkdir(parents=True)
    (final / "old-only").write_text("old")
    (final / "a").write_text("old")
    with library.scratch() as work:
        staged = work / "x.SAFE"
        staged.mkdir()
        (staged / "a").write_text("new")
        library.publish(staged, final)
    assert sorted(p.name for p in final.iterdir()) == ["a"]
    assert (final / "a").read_text() == "new"
    assert sorted(p.name for p in final.parent.iterdir()) == [final.name]  # nothing aside


def test_publish_over_archived_symlink_keeps_the_archive(tmp_path: Path, library: Library) -> None:
    archived = tmp_path / "L1C_ARCHIVE" / f"{L1C_ID}.SAFE"
    archived.mkdir(parents=True)
    (archived / "a").write_text("archived")
    final = library.level_dir("L1C", "40KCB") / f"{L1C_ID}.SAFE"
    final.parent.mkdir(parents=True)
    final.symlink_to(archived)
    with library.scratch() as work:
        staged = work / "x.SAFE"
        staged.mkdir()
        (staged / "a").write_text("new")
        library.publish(staged, final)
    assert not final.is_symlink()
    assert (final / "a").read_text() == "new"
    assert (archived / "a").read_text() == "archived"


def test_failed_publish_puts_the_old_product_back(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = library.level_dir("L1C", "40KCB") / f"{L1C_ID}.SAFE"
    final.mkdir(parents=True)
    (final / "a").write_text("old")
    real_replace = os.replace
    with library.scratch() as work:
        staged = work / "x.SAFE"
        staged.mkdir()

        def fail_on_staged(src: object, dst: object) -> None:
            if Path(str(src)) == staged:
                raise OSError(28, "No space left on device")
            real_replace(src, dst)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "replace", fail_on_staged)
        with pytest.raises(OSError, match="No space left"):
            library.publish(staged, final)
    assert (final / "a").read_text() == "old"
    assert sorted(p.name for p in final.parent.iterdir()) == [final.name]


def test_scratch_is_removed_on_error(library: Library) -> None:
    with pytest.raises(RuntimeError), library.scratch() as work:
        (work / "half").write_text("x")
        raise RuntimeError("boom")
    assert list(library.temp_dir.iterdir()) == []


# ----------------------------------------------------------------------------- install_zip


def test_install_good_zip(library: Library, demo_archive: DemoArchive) -> None:
    path, name = l1c_zip(demo_archive)
    installed = library.install_zip(path, name)
    assert installed == library.product_path(name)
    with zipfile.ZipFile(path) as archive:
        expected = sorted(n for n in archive.namelist() if not n.endswith("/"))
    assert (
        sorted(
            f"{name.safe_name}/{p.relative_to(installed).as_posix()}"
            for p in installed.rglob("*")
            if p.is_file()
        )
        == expected
    )
    meta = read_metadata(installed)
    assert meta.product_uri == name.id
    assert list(library.temp_dir.iterdir()) == []
    assert directory_bytes(installed) == sum(
        p.stat().st_size for p in installed.rglob("*") if p.is_file()
    )
    assert directory_bytes(installed) > 0


def test_install_nested_safe_is_accepted(
    tmp_path: Path, library: Library, demo_archive: DemoArchive
) -> None:
    path, name = l1c_zip(demo_archive)
    nested = rewrite_zip(
        path,
        tmp_path / path.name,
        rename=lambda entry: f"{name.id}/{entry}",
        extra={f"{name.id}/checksum.md5": b"beside the SAFE"},
    )
    installed = library.install_zip(nested, name)
    assert read_metadata(installed).product_uri == name.id
    assert not (installed / "checksum.md5").exists()
    assert not (installed / name.safe_name).exists()


def test_reinstall_replaces_and_keeps_one_copy(library: Library, demo_archive: DemoArchive) -> None:
    path, name = l1c_zip(demo_archive)
    first = library.install_zip(path, name)
    (first / "stale").write_text("x")
    second = library.install_zip(path, name)
    assert second == first
    assert not (second / "stale").exists()
    assert [p.name for p in second.parent.iterdir()] == [name.safe_name]


def link_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    info.create_system = 3  # unix, so the mode bits mean what they say
    return info


BadZip = Callable[[Path, Path, ProductName], Path]


def _not_a_zip(source: Path, target: Path, name: ProductName) -> Path:
    target.write_bytes(b"this is not a zip file at all")
    return target


def _truncated(source: Path, target: Path, name: ProductName) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def _crc_corrupt(source: Path, target: Path, name: ProductName) -> Path:
    corrupt_member(source, target, "_B03.jp2")
    return target


def _dotdot(source: Path, target: Path, name: ProductName) -> Path:
    return rewrite_zip(source, target, extra={f"{name.safe_name}/../../escaped.txt": b"x"})


def _absolute(source: Path, target: Path, name: ProductName) -> Path:
    return rewrite_zip(source, target, extra={f"/tmp/{name.id}-escaped.txt": b"x"})


def _symlink(source: Path, target: Path, name: ProductName) -> Path:
    rewrite_zip(source, target)
    with zipfile.ZipFile(target, "a") as archive:
        archive.writestr(link_entry(f"{name.safe_name}/GRANULE/link"), "/etc")
    return target


def _no_image(source: Path, target: Path, name: ProductName) -> Path:
    return rewrite_zip(source, target, keep=lambda info: not info.filename.endswith("_B8A.jp2"))


def _no_mtd(source: Path, target: Path, name: ProductName) -> Path:
    return rewrite_zip(
        source, target, keep=lambda info: not info.filename.endswith("MTD_MSIL1C.xml")
    )


def _renamed_other_product(source: Path, target: Path, name: ProductName) -> Path:
    # Right folder name, wrong content: the metadata inside names another product.
    return rewrite_zip(source, target, rename=lambda entry: entry.replace(L1C_ID, OTHER_ID))


def _half_band(source: Path, target: Path, name: ProductName) -> Path:
    # Every CRC right (the zip was built from a damaged file): only the image walk sees it.
    with zipfile.ZipFile(source) as archive:
        entry = next(i.filename for i in archive.infolist() if i.filename.endswith("_B04.jp2"))
        data = archive.read(entry)
    return rewrite_zip(
        source, target, keep=lambda i: i.filename != entry, extra={entry: data[: len(data) // 2]}
    )


def _empty(source: Path, target: Path, name: ProductName) -> Path:
    with zipfile.ZipFile(target, "w"):
        pass
    return target


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_not_a_zip, r"not a readable zip \(File is not a zip file\)"),
        (_truncated, r"not a readable zip"),
        (_crc_corrupt, r"entry '.*_B03\.jp2' is corrupt \(Bad CRC-32"),
        (_dotdot, r"entry '.*\.SAFE/\.\./\.\./escaped\.txt' escapes the product folder"),
        (_absolute, r"entry '/tmp/.*-escaped\.txt' escapes the product folder"),
        (_symlink, r"entry '.*\.SAFE/GRANULE/link' is a link"),
        (_empty, r"0 entries \(expected 1\.\.20000\)"),
    ],
    ids=["not-zip", "truncated", "crc", "dotdot", "absolute", "symlink", "empty"],
)  # fmt: skip
def test_bad_zip_is_rejected_and_leaves_nothing(
    tmp_path: Path, library: Library, demo_archive: DemoArchive, make: BadZip, message: str
) -> None:
    source, name = l1c_zip(demo_archive)
    bad = make(source, tmp_path / f"{name.id}.zip", name)
    with pytest.raises(ArchiveError, match=rf"^product zip {bad.name}: {message}"):
        library.install_zip(bad, name)
    assert_nothing_left(library, name)
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path(f"/tmp/{name.id}-escaped.txt").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_half_band, r"GRANULE/.*_B04\.jp2: truncated \(\d+ bytes, box b'\w+' runs past the end\)"),
        (_no_image, r"1 listed images missing, e\.g\. GRANULE/.*_B8A\.jp2"),
        (_no_mtd, r"\w+\.SAFE: no MTD_MSIL1C\.xml or MTD_MSIL2A\.xml in "),
        (_renamed_other_product, rf"metadata names {L1C_ID}, not {OTHER_ID}"),
    ],
    ids=["half-band", "no-image", "no-mtd", "other-content"],
)  # fmt: skip
def test_damaged_product_is_quarantined_not_published(
    tmp_path: Path, library: Library, demo_archive: DemoArchive, make: BadZip, message: str
) -> None:
    source, name = l1c_zip(demo_archive)
    if make is _renamed_other_product:
        name = ProductName.parse(OTHER_ID)
    bad = make(source, tmp_path / f"{name.id}.zip", name)
    with pytest.raises(CorruptProductError, match=rf"^product zip {bad.name}: {message}") as info:
        library.install_zip(bad, name)
    folder = library.quarantine_dir / name.id
    assert info.value.quarantine == folder
    assert str(info.value).endswith(f"; not published, quarantined in {folder}")
    assert not library.product_path(name).exists()
    assert not library.has_product(name)
    assert library.products("L1C", "40KCB") == []
    assert list(library.temp_dir.iterdir()) == [library.quarantine_dir]
    assert sorted(p.name for p in folder.iterdir()) == [REASON_FILE, name.safe_name]
    reason = (folder / REASON_FILE).read_text(encoding="utf-8").splitlines()
    assert reason[0].startswith(f"{name.id} was not published (")
    assert any(re.search(message, line) for line in reason[1:])


def test_a_second_quarantine_of_a_product_replaces_the_first(
    tmp_path: Path, library: Library, demo_archive: DemoArchive
) -> None:
    source, name = l1c_zip(demo_archive)
    for make in (_no_image, _half_band):
        bad = make(source, tmp_path / f"{name.id}.zip", name)
        with pytest.raises(CorruptProductError):
            library.install_zip(bad, name)
    assert [p.name for p in library.quarantine_dir.iterdir()] == [name.id]
    reason = (library.quarantine_dir / name.id / REASON_FILE).read_text(encoding="utf-8")
    assert "_B04.jp2: truncated" in reason and "listed images missing" not in reason


def test_zip_of_another_product_is_rejected(
    tmp_path: Path, library: Library, demo_archive: DemoArchive
) -> None:
    source, _ = l1c_zip(demo_archive, "2022-01-25")
    _, wanted = l1c_zip(demo_archive, "2022-01-20")
    with pytest.raises(ArchiveError) as info:
        library.install_zip(source, wanted)
    assert str(info.value) == (
        f"product zip {source.name}: does not contain {wanted.safe_name} "
        f"(top level: ['{source.stem}.SAFE'])"
    )
    assert_nothing_left(library, wanted)


def test_absurd_declared_size_is_rejected(
    library: Library, demo_archive: DemoArchive, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, name = l1c_zip(demo_archive)
    with zipfile.ZipFile(source) as archive:
        total = sum(i.file_size for i in archive.infolist())
    monkeypatch.setattr(library_module, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(ArchiveError) as info:
        library.install_zip(source, name)
    assert str(info.value) == f"product zip {source.name}: unpacks to {total} bytes, over 1000"
    assert_nothing_left(library, name)


def test_bad_zip_keeps_the_product_already_there(
    tmp_path: Path, library: Library, demo_archive: DemoArchive
) -> None:
    source, name = l1c_zip(demo_archive)
    installed = library.install_zip(source, name)
    files_before = sorted(p.relative_to(installed) for p in installed.rglob("*"))
    bad = _crc_corrupt(source, tmp_path / source.name, name)
    with pytest.raises(ArchiveError, match="is corrupt"):
        library.install_zip(bad, name)
    assert sorted(p.relative_to(installed) for p in installed.rglob("*")) == files_before
    assert read_metadata(installed).product_uri == name.id
    assert list(library.temp_dir.iterdir()) == []
