"""Library clean: a library seeded with every kind of debris next to good products; a dry run
removes nothing, a real run removes exactly the debris, recent entries and other tiles are
left alone, and a second run finds nothing."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from s2_assets.errors import TileIdError
from s2_assets.library.clean import KEPT_RECENT, REMOVED, WOULD_REMOVE, clean_library
from s2_assets.library.tree import Library
from s2_assets.products import ProductName
from s2_assets_tests.conftest import DemoSafes

HOUR = 3600.0


def tree(root: Path) -> dict[str, int]:
    """Every path below ``root`` with its size (0 for folders)."""
    return {
        str(p.relative_to(root)): (0 if p.is_dir() else p.lstat().st_size)
        for p in sorted(root.rglob("*"))
    }


def age_everything(root: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    for path in [root, *root.rglob("*")]:
        os.utime(path, (stamp, stamp), follow_symlinks=False)


class Seeded:
    """A library with good products and each kind of debris; ``debris`` maps rule -> paths."""

    def __init__(self, lib: Library, safes: DemoSafes) -> None:
        self.lib = lib
        self.debris: dict[str, list[Path]] = {}
        l1c_dir, l2a_dir = lib.level_dir("L1C", "40KCB"), lib.level_dir("L2A", "40KCB")
        self.good_l1c = self._copy(safes.l1c_new, l1c_dir)
        self.good_l2a = self._copy(safes.l2a_new, l2a_dir)
        l2a = ProductName.parse(safes.l2a_new.name)
        other_l1c = ProductName.parse(safes.l1c_old.name)
        other_l2a = ProductName.parse(safes.l2a_old.name)

        # sen2chain's rules 1-5
        self._dir("sen2cor_leftover", l1c_dir / f"{l2a.id}.SAFE")
        self._dir("sen2cor_leftover", l1c_dir / f"{l2a.id}.tmp")
        self._file("stray_zip", l1c_dir / f"{other_l1c.id}.zip")
        self._file("stray_zip", l2a_dir / f"{other_l2a.id}.zip")
        self._dir("partial_product", l1c_dir / other_l1c.id)
        self._dir("partial_product", l2a_dir / other_l2a.id)
        broken_l1c = self._copy(safes.l1c_old, l1c_dir)
        (broken_l1c / "MTD_MSIL1C.xml").write_text("<not closed")
        self.debris.setdefault("unreadable_product", []).append(broken_l1c)
        link = l2a_dir / "S2B_MSIL2A_20220201T063511_N0509_R120_T40KCB_20220201T091000.SAFE"
        link.symlink_to(lib.root / "archive-gone" / link.name)
        self.debris["unreadable_product"].append(link)
        incomplete = self._copy(safes.l2a_old, l2a_dir)
        next(incomplete.glob("GRANULE/*/IMG_DATA/R10m/*_B08_10m.jp2")).unlink()
        self.debris["incomplete_l2a"] = [incomplete]
        # Damaged on disk after publishing: a band cut short, an end marker overwritten.
        cut = self._copy(
            safes.l1c_new,
            l1c_dir,
            "S2B_MSIL1C_20220130T063511_N0509_R120_T40KCB_20220130T091000.SAFE",
        )
        band = next(cut.glob("GRANULE/*/IMG_DATA/*_B04.jp2"))
        band.write_bytes(band.read_bytes()[: band.stat().st_size // 2])
        no_eoc = self._copy(
            safes.l2a_new,
            l2a_dir,
            "S2B_MSIL2A_20220130T063511_N0509_R120_T40KCB_20220130T091000.SAFE",
        )
        scl = next(no_eoc.glob("GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2"))
        scl.write_bytes(scl.read_bytes()[:-2] + b"\0\0")
        self.debris["damaged_product"] = [cut, no_eoc]
        # A product verification kept out of the library, and the Sen2Cor slot locks.
        staged = self._copy(safes.l1c_new, lib.temp_dir / "fetch-q")
        self.quarantined = lib.quarantine(
            staged, ProductName.parse(staged.name), ["zip: GRANULE/x_B04.jp2: truncated"]
        )
        shutil.rmtree(staged.parent)
        self.debris["quarantined"] = [self.quarantined]
        self.slot = self._put(lib.temp_dir / "sen2cor-slots" / "slot-0.lock")

        # ours
        masks = lib.mask_dir("40KCB", l2a.id)
        ndvi = lib.index_dir("NDVI", "40KCB", l2a.id)
        self.kept = [
            self._put(masks / f"{l2a.id}_CM001.tif"),
            self._put(masks / f"{l2a.id}_CM001.xml"),
            self._put(masks / "MSK_CLDPRB_20m.jp2"),
            self._put(ndvi / f"{l2a.id}_NDVI.tif"),
            self._put(ndvi / f"{l2a.id}_NDVI.tif.aux.xml"),  # its .tif is there: a user's stats
            self._put(ndvi / f"{l2a.id}_NDVI.jp2.aux.xml"),  # sen2chain's JPEG2000 nodata
        ]
        self._file("partial_file", masks / f".{l2a.id}_CM001.tif.77-0a1b2c3d.part.tif")
        self._file("partial_file", masks / f".{l2a.id}_CM001.tif.77-0a1b2c3d.scratch.tif")
        self._file("partial_file", masks / ".MSK_CLDPRB_20m.jp2.k2j_x9")
        self._file("partial_file", ndvi / f".{l2a.id}_NDVI.xml.77-0a1b2c3d.part")
        self._file("partial_file", l1c_dir / f"{other_l1c.id}.zip.part")
        self._dir("old_entry", l2a_dir / f".{l2a.id}.SAFE.old-4242")
        self._file("old_entry", ndvi / f".{l2a.id}_NDVI.tif.old-4242")
        self._file("orphan_aux_xml", ndvi / f"{l2a.id}_NDWIGAO.tif.aux.xml")
        self._dir("dead_temp", lib.temp_dir / "fetch-abc123")
        self._file("dead_temp", lib.temp_dir / "stray.zip.lock")

        # Another tile's debris: out of scope when only 40KCB is cleaned.
        self.other_tile = self._put(lib.level_dir("L1C", "40KCA") / f"{other_l1c.id}.zip")
        age_everything(lib.root, 10 * HOUR)

        # A run still writing deep inside its scratch folder: recent, kept.
        self.recent = lib.temp_dir / "sen2cor-live" / "out" / "B04.jp2"
        self._put(self.recent)
        age_everything(lib.temp_dir / "sen2cor-live", 10 * HOUR)
        os.utime(self.recent)

    @staticmethod
    def _copy(safe: Path, folder: Path, name: str | None = None) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copytree(safe, folder / (name or safe.name)))

    @staticmethod
    def _put(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"0123456789")
        return path

    def _file(self, rule: str, path: Path) -> None:
        self.debris.setdefault(rule, []).append(self._put(path))

    def _dir(self, rule: str, path: Path) -> None:
        self._put(path / "GRANULE" / "inner.jp2")
        self.debris.setdefault(rule, []).append(path)


@pytest.fixture
def seeded(library: Library, demo_safes: DemoSafes) -> Seeded:
    return Seeded(library, demo_safes)


def found(report_rows: list[dict[str, str]]) -> dict[str, set[str]]:
    by_rule: dict[str, set[str]] = {}
    for row in report_rows:
        by_rule.setdefault(row["rule"], set()).add(row["path"])
    return by_rule


def test_dry_run_reports_every_kind_and_removes_nothing(seeded: Seeded) -> None:
    before = tree(seeded.lib.root)
    report = clean_library(seeded.lib, ["40KCB"], remove=False)
    assert tree(seeded.lib.root) == before

    expected = {rule: {str(p) for p in paths} for rule, paths in seeded.debris.items()}
    expected["dead_temp"].add(str(seeded.lib.temp_dir / "sen2cor-live"))
    assert found(report.rows()) == expected
    assert report.counts()["partial_file"] == 5
    actions = {f.path: f.action for f in report.findings}
    assert actions.pop(seeded.lib.temp_dir / "sen2cor-live") == KEPT_RECENT
    assert set(actions.values()) == {WOULD_REMOVE}
    assert report.removed == [] and report.failed == []
    assert "dry run, nothing removed" in report.markdown()
    by_path = {f.path: f for f in report.findings}
    assert "R10m" in by_path[seeded.debris["incomplete_l2a"][0]].detail
    assert "MTD_MSIL1C.xml" in by_path[seeded.debris["unreadable_product"][0]].detail
    cut, no_eoc = seeded.debris["damaged_product"]
    assert re.search(
        r"_B04\.jp2: truncated \(\d+ bytes, box b'\w+' runs past the end\)$", by_path[cut].detail
    )
    assert by_path[no_eoc].detail.endswith("_SCL_20m.jp2: incomplete codestream (no end marker)")
    assert by_path[seeded.quarantined].detail == "zip: GRANULE/x_B04.jp2: truncated"
    assert seeded.slot.parent not in by_path and seeded.slot not in by_path


def test_clean_removes_the_debris_and_only_it(seeded: Seeded) -> None:
    report = clean_library(seeded.lib, ["40KCB"], remove=True)
    removed = {f.path for f in report.removed}
    assert removed == {p for paths in seeded.debris.values() for p in paths}
    assert report.failed == []
    for path in removed:
        assert not path.exists() and not path.is_symlink(), path
    for path in [*seeded.kept, seeded.good_l1c, seeded.good_l2a, seeded.recent, seeded.other_tile,
                 seeded.slot]:  # fmt: skip
        assert path.exists(), path
    # Removed damaged products are missing again: the next planning round fetches them anew.
    for damaged in seeded.debris["damaged_product"]:
        assert not seeded.lib.has_product(ProductName.parse(damaged.name))
    # Folders were renamed aside before removal: no .old-clean entry is left behind.
    assert not list(seeded.lib.root.rglob("*.old-clean-*"))

    again = clean_library(seeded.lib, ["40KCB"], remove=True)
    assert [(f.path, f.action) for f in again.findings] == [
        (seeded.lib.temp_dir / "sen2cor-live", KEPT_RECENT)
    ]


def test_every_tile_when_none_given_and_min_age_zero(seeded: Seeded) -> None:
    report = clean_library(seeded.lib, None, remove=True, min_age=timedelta(0))
    assert report.tiles == ["40KCA", "40KCB"]
    assert not seeded.other_tile.exists()
    assert not seeded.recent.exists()
    assert all(f.action == REMOVED for f in report.findings)


def test_an_empty_library_and_bad_tiles(library: Library) -> None:
    report = clean_library(library, None, remove=True)
    assert report.findings == [] and report.tiles == []
    with pytest.raises(TileIdError, match="T40KCB"):
        clean_library(library, ["T40KCB"], remove=False)


def test_a_removal_that_fails_is_reported(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    real_unlink: Callable[..., None] = Path.unlink

    def refuse(self: Path, missing_ok: bool = False) -> None:
        if self.name.endswith(".zip"):
            raise PermissionError(13, "Permission denied")
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    report = clean_library(seeded.lib, ["40KCB"], remove=True)
    failed = {f.path: f.action for f in report.failed}
    assert failed == {p: "failed: Permission denied" for p in seeded.debris["stray_zip"]}
    assert "2 failed" in report.summary()


def test_library_clean_job_shows_what_it_removed(seeded: Seeded) -> None:
    from s2_assets.assets.maintenance import library_clean_job
    from s2_assets.resources.library import LibraryResource

    resources = {"library": LibraryResource(root=str(seeded.lib.root))}

    def run(dry_run: bool) -> dict[str, Any]:
        config = {"ops": {"library_clean": {"config": {"tiles": ["40KCB"], "dry_run": dry_run}}}}
        result = library_clean_job.execute_in_process(run_config=config, resources=resources)
        assert result.success
        (output,) = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
        return {k: v.value for k, v in output.step_output_data.metadata.items()}

    before = tree(seeded.lib.root)
    dry = run(dry_run=True)
    assert tree(seeded.lib.root) == before
    assert dry["removed"] == 0 and dry["dry_run"] is True
    assert dry["per_rule"]["stray_zip"] == 2
    assert "| would remove | stray_zip |" in dry["findings"]

    done = run(dry_run=False)
    debris = [p for paths in seeded.debris.values() for p in paths]
    assert done["removed"] == len(debris)
    for path in debris:
        assert "| removed | " in done["findings"] and str(path) in done["findings"]
        assert not path.exists() and not path.is_symlink()


def test_command_line(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from s2_assets.cli import main

    monkeypatch.setenv("S2_DATA_HOME", str(seeded.lib.root))
    before = tree(seeded.lib.root)
    # Without --remove the command only lists, as sen2chain's library clean does.
    assert main(["clean", "--tile", "40KCB"]) == 0
    out = capsys.readouterr().out
    assert tree(seeded.lib.root) == before
    zip_line = next(line for line in out.splitlines() if "stray_zip" in line)
    assert zip_line.startswith("would remove")
    n_debris = sum(len(paths) for paths in seeded.debris.values())  # and the recent entry
    damaged_lines = [line for line in out.splitlines() if "damaged_product" in line]
    assert len(damaged_lines) == len(seeded.debris["damaged_product"])
    assert out.splitlines()[-2:] == [
        f"{n_debris + 1} finding(s) in 1 tile(s) (dry run, nothing removed): 0 removed, 0 failed",
        "add --remove to remove what is listed as 'would remove'",
    ]

    assert main(["clean", "--remove", "--tile", "40KCB", "--tile", "40KCA"]) == 0
    out = capsys.readouterr().out
    assert "in 2 tile(s) (removed)" in out
    assert "add --remove" not in out
    assert not seeded.other_tile.exists()
    assert all(not p.exists() for paths in seeded.debris.values() for p in paths)

    assert main(["clean", "--tile", "T40KCB"]) == 2
    assert "invalid tile id 'T40KCB'" in capsys.readouterr().err
