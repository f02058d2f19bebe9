"""A writer that dies between two writes of one product leaves nothing under a final name
that the planner would take as complete, and running again gives the library an
uninterrupted run gives.

Each product here is two writes: a SAFE and its ``sen2chain_info.xml``, a mask or index file
and its ``<stem>.xml`` record. The run is killed at one rename into the library, as a
SIGKILL of a Celery worker would (``s2_assets_tests/e2e/test_celery.py`` does it for real):
:class:`Killed` is raised in place of the rename. What it leaves is then judged as the
planner judges it (an output is present when its raster or SAFE is under its final name:
:mod:`s2_assets.jobs.tile_disk`), and the same run started again must leave the library,
byte for byte, that a run nobody killed leaves.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from s2_assets.definitions import build_definitions
from s2_assets.demo.products import DEMO_PRODUCTS, build_archive
from s2_assets.jobs.options import TaskOptions
from s2_assets.jobs.tile_disk import TileDisk
from s2_assets.jobs.wanted import Output, day_outputs
from s2_assets.library import acquisitions as catalogue
from s2_assets.library.provenance import SAFE_RECORD
from s2_assets.library.tree import Library
from s2_assets.partitions import TileDate
from s2_assets.settings import Settings
from s2_assets.specs import DEFAULT_MASK_SPEC

KEY = TileDate("31UFS", date(2022, 1, 22))
ASSETS = ("l2a", "cloudmask", "ndvi", "nbr")
OPTIONS = TaskOptions(download="l2a", cloudmasks=(DEFAULT_MASK_SPEC,), indices=("NDVI", "NBR"))


class Killed(Exception):
    """Raised in place of the rename the writer dies before."""


def _record_of(path: Path) -> Path:
    return path / SAFE_RECORD if path.suffix == ".SAFE" else path.with_suffix(".xml")


# Where the writer dies: before the first rename into the library whose destination matches.
KILL_POINTS: dict[str, Callable[[Path], bool]] = {
    "the L2A's record": lambda path: path.name == SAFE_RECORD,
    "the L2A": lambda path: path.suffix == ".SAFE",
    "a mask's record": lambda path: "CLOUDMASKS" in path.parts and path.suffix == ".xml",
    "a mask": lambda path: "CLOUDMASKS" in path.parts and path.suffix == ".tif",
    "an index's record": lambda path: "INDICES" in path.parts and path.suffix == ".xml",
    "an index": lambda path: "INDICES" in path.parts and path.suffix == ".tif",
}


class RenameKiller:
    """``os.replace`` that raises :class:`Killed` instead of the first rename into ``root``
    (to a visible name: hidden names are scratch) whose destination matches ``where``."""

    def __init__(self, root: Path, where: Callable[[Path], bool]) -> None:
        self.root, self.where = root, where
        self.real = os.replace
        self.killed_at: Path | None = None

    def __call__(self, source: object, destination: object, **kwargs: object) -> None:
        path = Path(str(destination))
        if (
            self.killed_at is None
            and self.root in path.parents
            and not path.name.startswith(".")
            and self.where(path)
        ):
            self.killed_at = path
            raise Killed(f"killed before renaming into {path}")
        self.real(source, destination, **kwargs)  # type: ignore[arg-type]


def library_files(root: Path) -> dict[str, bytes]:
    """Every visible file under ``data/``, records without the two values that differ
    between runs by design (when, and which run)."""
    files = {}
    for path in sorted((root / "data").rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        content = path.read_bytes()
        if path.suffix == ".xml":
            content = re.sub(rb"<PROCESSING_DATE>[^<]*</PROCESSING_DATE>", b"", content)
            content = re.sub(rb"<S2_ASSETS_RUN>[^<]*</S2_ASSETS_RUN>", b"", content)
        files[str(path.relative_to(root))] = content
    return files


class Runner:
    """Runs of the day's products into one library, on one instance."""

    def __init__(self, library: Path, archive: Path, instance: dg.DagsterInstance) -> None:
        self.library, self.instance = library, instance
        defs = build_definitions(
            Settings(data_home=library, archive_root=str(archive), date_start="2022-01-01")
        )
        self.job = defs.resolve_implicit_global_asset_job_def()
        instance.add_dynamic_partitions("tiles", [KEY.tile])

    def catalogue(self) -> None:
        assert self.job.execute_in_process(
            instance=self.instance,
            asset_selection=[dg.AssetKey("acquisitions")],
            partition_key=KEY.tile,
        ).success

    def products(self) -> dg.ExecuteInProcessResult:
        return self.job.execute_in_process(
            instance=self.instance,
            asset_selection=[dg.AssetKey(name) for name in ASSETS],
            partition_key=str(KEY),
            raise_on_error=False,
        )


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("archive")
    build_archive(path, [p for p in DEMO_PRODUCTS if p.tile == KEY.tile], size=12)
    return path


@pytest.fixture(scope="module")
def catalogued(tmp_path_factory: pytest.TempPathFactory, archive: Path) -> Path:
    """A library holding the tile's catalogue only (each test works on a copy)."""
    library = tmp_path_factory.mktemp("catalogued")
    with dg.instance_for_test() as instance:
        Runner(library, archive, instance).catalogue()
    return library


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, archive: Path, catalogued: Path
) -> dict[str, bytes]:
    """What a run nobody kills leaves."""
    library = tmp_path_factory.mktemp("reference") / "library"
    shutil.copytree(catalogued, library)
    with dg.instance_for_test() as instance:
        assert Runner(library, archive, instance).products().success
    return library_files(library)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as opened:
        yield opened


def planner_view(library: Path) -> list[tuple[Output, bool]]:
    """The day's wanted outputs and whether the planner counts each present."""
    lib = Library(library)
    records = [
        r for r in catalogue.read_table(lib.acquisitions_path(KEY.tile)) if r.date == KEY.date
    ]
    return day_outputs(OPTIONS, records, TileDisk(lib, KEY.tile))


def output_files(library: Path, output: Output) -> list[Path]:
    """The files that make ``output``: the product(s) of its level, or its raster."""
    lib = Library(library)
    if output.asset == "l2a":
        return [p.path for p in lib.products("L2A", KEY.tile, KEY.date)]
    if output.asset == "cloudmask":
        folder = lib.mask_dir(KEY.tile, output.product)
    else:
        folder = lib.index_dir(output.label.split("_")[0], KEY.tile, output.product)
    return [folder / f"{output.product}_{output.label}.tif"]


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_run_killed_before_a_rename_leaves_nothing_taken_as_complete_and_reruns_whole(
    point: str,
    tmp_path: Path,
    archive: Path,
    catalogued: Path,
    reference: dict[str, bytes],
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    library = tmp_path / "library"
    shutil.copytree(catalogued, library)
    runner = Runner(library, archive, instance)
    killer = RenameKiller(library / "data", KILL_POINTS[point])
    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", killer)
        killed = runner.products()
    assert killer.killed_at is not None, f"no rename into {point}"
    assert not killed.success

    # Whatever the planner counts present is whole: the product and its record.
    for output, present in planner_view(library):
        files = output_files(library, output)
        if present:
            assert files, output
            incomplete = [str(f) for f in files if not _record_of(f).is_file()]
            assert not incomplete, f"killed before {point}: present without record: {incomplete}"

    again = runner.products()
    assert again.success
    assert all(present for _, present in planner_view(library))
    got = library_files(library)
    assert sorted(got) == sorted(reference), f"killed before {point}"
    differ = [path for path in reference if got[path] != reference[path]]
    assert not differ, f"killed before {point}: differ from an uninterrupted run: {differ}"
