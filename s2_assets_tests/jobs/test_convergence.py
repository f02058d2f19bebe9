"""Jobs converge, on a real instance: schedule ticks and sensor evaluations through Dagster's
API, backfills executed as ranged runs. Each test first shows what went wrong before.

- a product offline and one whose zip is corrupt are fetched by a later tick once healthy,
  after backing off, with their last errors shown in between;
- a second job on a catalogued tile, and an index added to a task, are made at the next tick;
- a tick with nothing missing launches nothing;
- ``remove = l2a`` keeps downloaded L2A and removes computed ones; ``download = l2a`` with
  ``compute_l2a`` downloads no L1C; masks and indices kept, the removed L2A is not remade.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from s2_assets.cli import main
from s2_assets.definitions import build_definitions
from s2_assets.demo.products import DEMO_PRODUCTS, DemoProduct, build_archive, product_name
from s2_assets.demo.quickstart import DEMO_COLUMNS, DEMO_SETTINGS
from s2_assets.errors import ProductOfflineError
from s2_assets.jobs.backfill import requested_partitions
from s2_assets.jobs.jobfile import job_path, load_job
from s2_assets.jobs.planner import plan_job
from s2_assets.jobs.run_now import run_stretches
from s2_assets.jobs.writer import job_text
from s2_assets.library.failures import ledger_dir
from s2_assets.library.tree import Library
from s2_assets.partitions import TileDate
from s2_assets.providers.archive import ArchiveProvider
from s2_assets.settings import Settings
from s2_assets_tests.conftest import corrupt_member
from s2_assets_tests.jobs.driver import run_requests, sense, tick
from s2_assets_tests.sen2cor_standin import write_launcher

HEADER = job_text(replace(DEMO_SETTINGS, timing="0 1 * * *", nb_proc=1), DEMO_COLUMNS)
MASK = "CM004-CSH1-CMP1-CHP1-TCI1-ITER0"
TILE = [p for p in DEMO_PRODUCTS if p.tile == "40KCB"]
# The L2A a download = l2a task under 80 % takes (newest baseline of each acquisition).
TAKEN = {
    "2022-01-20": "S2A_MSIL2A_20220120T063511_N0301_R120_T40KCB_20220120T083511",
    "2022-01-25": "S2B_MSIL2A_20220125T063509_N0400_R120_T40KCB_20220125T083509",
    "2022-01-30": "S2B_MSIL2A_20220130T063511_N0509_R120_T40KCB_20220130T083511",
}


@dataclass
class World:
    tmp: Path
    archive: Path
    library: Path
    instance: dg.DagsterInstance
    defs: dg.Definitions
    cursor: str | None = None

    @property
    def lib(self) -> Library:
        return Library(self.library)

    def write_job(self, jid: str, rows: list[str]) -> None:
        self.lib.jobs_dir.mkdir(parents=True, exist_ok=True)
        (self.lib.jobs_dir / f"job_{jid}.cfg").write_text(HEADER + "\n".join(rows) + "\n")
        self.reload()

    def reload(self) -> None:
        """The code location reloads (a new job file gives a new schedule)."""
        launcher = write_launcher(self.tmp / "Sen2Cor-02.12.03" / "bin")
        settings = Settings(
            data_home=self.library,
            archive_root=str(self.archive),
            date_start="2022-01-01",
            sen2cor_paths=(str(launcher),),
        )
        self.defs = build_definitions(settings)

    def job_tick(self, jid: str) -> dg.SensorResult:
        """The job's schedule tick, its catalogue refresh runs, then the sensor."""
        run_requests(self.defs, self.instance, tick(self.defs, self.instance, jid), jid)
        result = sense(self.defs, self.instance, self.cursor)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        return result

    def execute(self, request: dg.RunRequest) -> bool:
        """What the backfill daemon does with the request; False when a run failed."""
        covered = requested_partitions(request)
        partitions = {
            k.to_user_string(): {TileDate.parse(p) for p in ps} for k, ps in covered.items()
        }
        job = self.defs.resolve_implicit_global_asset_job_def()
        try:
            run_stretches(job, self.instance, partitions, request.tags)
        except RuntimeError:
            return False
        return True

    def held(self, level: str) -> list[str]:
        folder = self.library / "data" / level / "40KCB"
        return (
            sorted(p.name.removesuffix(".SAFE") for p in folder.iterdir())
            if folder.is_dir()
            else []
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    archive = tmp_path / "archive"
    build_archive(archive, TILE, size=12)
    with dg.instance_for_test() as instance:
        world = World(tmp_path, archive, tmp_path / "library", instance, dg.Definitions())
        yield world


def zip_of(world: World, product_id: str) -> Path:
    return next(world.archive.rglob(f"{product_id}.zip"))


def skip(result: dg.SensorResult) -> str:
    return result.skip_reason.skip_message or "" if result.skip_reason else ""


def status(world: World, jid: str) -> str:
    job = load_job(job_path(world.lib.jobs_dir, jid))
    now = datetime.now(UTC)
    return plan_job(job, world.lib, today=now.date(), now=now).summary()


def age_failures(world: World, hours: float) -> None:
    """Move every recorded failure ``hours`` into the past (time passes between ticks)."""
    for path in ledger_dir(world.lib.logs_dir, "40KCB").glob("*.json"):
        data = json.loads(path.read_text())
        data["last"] = (datetime.fromisoformat(data["last"]) - timedelta(hours=hours)).isoformat()
        path.write_text(json.dumps(data))


def test_offline_and_corrupt_products_are_fetched_by_a_later_tick(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world.write_job("reunion", ["40KCB;2022-01-01;2022-02-10;80;archive;True;l2a;False;;;;x"])
    offline, corrupt = TAKEN["2022-01-25"], TAKEN["2022-01-30"]
    healthy_zip = world.tmp / "healthy.zip"
    shutil.copyfile(zip_of(world, corrupt), healthy_zip)
    corrupt_member(healthy_zip, zip_of(world, corrupt), "B04_10m.jp2")
    real_fetch = ArchiveProvider.fetch

    def fetch(self, record, workdir):  # 01-25 offline until the provider has it back
        if record.product_id == offline:
            raise ProductOfflineError(f"{offline} is offline (ordered from the long-term archive)")
        return real_fetch(self, record, workdir)

    monkeypatch.setattr(ArchiveProvider, "fetch", fetch)
    (first,) = world.job_tick("reunion").run_requests
    assert not world.execute(first)  # the corrupt zip fails its run
    assert world.held("L2A") == [TAKEN["2022-01-20"]]

    # Before: later ticks launched only *new* products, so these two were never tried again.
    # Now they are wanted and failing, with their last errors, and back off for a while.
    text = status(world, "reunion")
    assert "3 wanted outputs: 1 present, 2 missing" in text
    # The same through the command line.
    monkeypatch.setenv("S2_DATA_HOME", str(world.library))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["jobs", "status", "reunion"]) == 0
    printed = capsys.readouterr().out
    assert text in printed and "missing by asset: l2a 2" in printed
    assert f"failing l2a {offline}: 1 time(s)" in text and "is offline" in text
    assert f"failing l2a {corrupt}: 1 time(s)" in text and "corrupt" in text
    soon = world.job_tick("reunion")
    assert not soon.run_requests
    assert "(2 backing off)" in skip(soon) and offline in skip(soon)

    # The provider is healthy again and the back-off (10 min after a first failure) is over.
    monkeypatch.setattr(ArchiveProvider, "fetch", real_fetch)
    shutil.copyfile(healthy_zip, zip_of(world, corrupt))
    age_failures(world, 1)
    (retry,) = world.job_tick("reunion").run_requests
    covered = requested_partitions(retry)
    # Only the missing days (and the empty days between them, for one ranged run).
    assert covered == {
        dg.AssetKey("l2a"): {f"2022-01-{d}|40KCB" for d in range(25, 31)},
    }
    assert world.execute(retry)
    assert world.held("L2A") == sorted(TAKEN.values())
    assert not list(ledger_dir(world.lib.logs_dir, "40KCB").glob("*.json"))

    # Nothing missing: the tick launches nothing and says so.
    done = world.job_tick("reunion")
    assert not done.run_requests
    assert skip(done) == "reunion: 3 wanted outputs, all present"


def test_back_off_doubles_and_is_capped_at_a_day(world: World) -> None:
    from s2_assets.library.failures import record_failure

    logs = world.lib.logs_dir
    start = datetime(2024, 1, 1, tzinfo=UTC)
    waits = []
    for n in range(1, 11):
        record = record_failure(logs, "40KCB", "l2a", "X", "boom", now=start)
        waits.append(record.retry_at - start)
        assert record.count == n
    assert waits[:4] == [timedelta(minutes=m) for m in (10, 20, 40, 80)]
    assert waits[-1] == timedelta(hours=24)


def test_second_job_and_an_added_index_are_made_at_the_next_tick(world: World) -> None:
    world.write_job("a", ["40KCB;2022-01-01;2022-02-10;80;archive;True;l2a;False;;;;x"])
    (first,) = world.job_tick("a").run_requests
    assert world.execute(first)
    assert world.held("L2A") == sorted(TAKEN.values())

    # A second job on the catalogued tile asks for masks and NDVI. Before: "new products
    # found, but none that a task accepts" (nothing was new). Now: made at its next tick,
    # and what job a fetched satisfies job b.
    world.write_job("b", [f"40KCB;2022-01-01;2022-02-10;80;archive;True;l2a;False;{MASK};NDVI;;y"])
    (second,) = world.job_tick("b").run_requests
    covered = requested_partitions(second)
    assert set(covered) == {dg.AssetKey("cloudmask"), dg.AssetKey("ndvi")}
    assert second.tags["s2/job"] == "b"
    assert world.execute(second)
    ndvi = {
        l2a: world.lib.index_dir("NDVI", "40KCB", l2a) / f"{l2a}_NDVI_{MASK}.tif"
        for l2a in TAKEN.values()
    }
    assert all(path.is_file() for path in ndvi.values())
    before = {path: path.stat().st_mtime_ns for path in ndvi.values()}

    # EVI added to job b's task: only EVI is launched; NDVI is not made again.
    world.write_job(
        "b", [f"40KCB;2022-01-01;2022-02-10;80;archive;True;l2a;False;{MASK};NDVI/EVI;;y"]
    )
    (third,) = world.job_tick("b").run_requests
    assert set(requested_partitions(third)) == {dg.AssetKey("evi")}
    assert world.execute(third)
    for l2a in TAKEN.values():
        assert (world.lib.index_dir("EVI", "40KCB", l2a) / f"{l2a}_EVI_{MASK}.tif").is_file()
    assert {path: path.stat().st_mtime_ns for path in ndvi.values()} == before
    # Both jobs now have everything they want.
    assert status(world, "a") == "a: 3 wanted outputs, all present"
    assert status(world, "b") == "b: 18 wanted outputs, all present"  # 3 x (L2A, mask, 2 x 2)


def test_remove_l2a_keeps_downloaded_and_removes_computed(tmp_path: Path) -> None:
    # The archive has no L2A for 01-25; its L1C is already in the library.
    l1c_0125 = next(
        p for p in TILE if p.level == "L1C" and p.sensing.date().isoformat() == "2022-01-25"
    )
    products = [
        p for p in TILE if not (p.level == "L2A" and p.sensing.date().isoformat() == "2022-01-25")
    ]
    archive = tmp_path / "archive"
    build_archive(archive, products, size=12)
    with dg.instance_for_test() as instance:
        world = World(tmp_path, archive, tmp_path / "library", instance, dg.Definitions())
        name = product_name(l1c_0125)
        world.lib.install_zip(zip_of(world, name.id), name)
        world.write_job(
            "r", [f"40KCB;2022-01-01;2022-02-10;80;archive;True;l2a;True;{MASK};NDVI;l2a;x"]
        )
        (request,) = world.job_tick("r").run_requests
        assert dg.AssetKey("l1c") not in requested_partitions(request)
        assert world.execute(request)
        downloaded = [TAKEN["2022-01-20"], TAKEN["2022-01-30"]]
        computed = name.as_level("L2A").id
        # Before: the rule took any SAFE with sen2chain_info.xml for "made here" and deleted the
        # downloaded L2A too. Now only the L2A Sen2Cor computed in this run goes.
        assert world.held("L2A") == downloaded
        # download = l2a with compute_l2a: no L1C was downloaded, only the one we had is there.
        assert world.held("L1C") == [name.id]
        mask_of_computed = world.lib.mask_dir("40KCB", computed) / f"{computed}_{MASK}.tif"
        assert mask_of_computed.is_file()
        # sen2chain's ref logic: the removed L2A's mask and NDVI exist, so it is not remade.
        done = world.job_tick("r")
        assert not done.run_requests
        assert skip(done) == "r: 12 wanted outputs, all present"  # 3 x (L2A, mask, 2)


def test_a_tick_with_nothing_missing_launches_nothing(world: World) -> None:
    world.write_job("a", ["40KCB;2022-01-01;2022-02-10;80;archive;True;l2a;False;;;;x"])
    (first,) = world.job_tick("a").run_requests
    assert world.execute(first)
    runs = len(world.instance.get_runs())
    again = world.job_tick("a")
    assert not again.run_requests
    assert skip(again) == "a: 3 wanted outputs, all present"
    assert len(world.instance.get_runs()) == runs + 1  # only the tick's catalogue refresh


def test_work_in_progress_is_not_launched_twice(world: World) -> None:
    world.write_job("a", ["40KCB;2022-01-01;2022-02-10;80;archive;True;l2a;False;;;;x"])
    (first,) = world.job_tick("a").run_requests
    # A second job wanting the same files, planned while the first backfill is queued.
    job = load_job(job_path(world.lib.jobs_dir, "a"))
    covered = {"l2a": {TileDate.parse(k) for k in requested_partitions(first)[dg.AssetKey("l2a")]}}
    now = datetime.now(UTC)
    plan = plan_job(job, world.lib, today=now.date(), now=now, in_progress=covered)
    assert not plan.launches and plan.in_progress == 3


def test_planning_reads_no_raster(tmp_path: Path) -> None:
    """Zero-byte files under the final names are enough for the planner: it only lists."""
    library = Library(tmp_path / "library")
    archive = tmp_path / "archive"
    build_archive(archive, [p for p in TILE if p.level == "L2A"], size=12)
    library.jobs_dir.mkdir(parents=True)
    (library.jobs_dir / "job_z.cfg").write_text(
        HEADER + f"40KCB;2022-01-01;2022-02-10;80;archive;True;l2a;False;{MASK};NDVI;l2a;x\n"
    )
    from s2_assets.library import acquisitions as catalogue
    from s2_assets.providers.archive import ArchiveProvider as Archive

    found = Archive(archive, name="archive").search(
        "40KCB", "L2A", datetime(2022, 1, 1).date(), datetime(2022, 2, 10).date()
    )
    catalogue.write_table(library.acquisitions_path("40KCB"), found)
    for l2a in TAKEN.values():
        (library.mask_dir("40KCB", l2a)).mkdir(parents=True)
        (library.mask_dir("40KCB", l2a) / f"{l2a}_{MASK}.tif").write_bytes(b"")
        folder = library.index_dir("NDVI", "40KCB", l2a)
        folder.mkdir(parents=True)
        for stem in (f"{l2a}_NDVI", f"{l2a}_NDVI_{MASK}"):
            (folder / f"{stem}.tif").write_bytes(b"")
    job = load_job(library.jobs_dir / "job_z.cfg")
    now = datetime.now(UTC)
    plan = plan_job(job, library, today=now.date(), now=now)
    # No L2A on disk, but a remove rule and every mask/index present: nothing to fetch.
    assert plan.summary() == "z: 12 wanted outputs, all present"
    # Without the remove rule the L2A itself is wanted again.
    (library.jobs_dir / "job_z.cfg").write_text(
        HEADER + f"40KCB;2022-01-01;2022-02-10;80;archive;True;l2a;False;{MASK};NDVI;;x\n"
    )
    plan = plan_job(load_job(library.jobs_dir / "job_z.cfg"), library, today=now.date(), now=now)
    assert [o.label for _, o in plan.missing] == ["L2A"] * 3


def test_late_product_in_demo_product_list_is_known() -> None:
    assert isinstance(TILE[0], DemoProduct)
