"""EODC end to end on a real instance: schedule tick -> acquisitions -> staging_sensor submits
the cold zips to the Chiller stand-in -> ticks until the job ends -> one backfill of the staged
partitions -> ranged runs put the L2A in the library. Also: files left unstaged, an ERROR job,
throttling by the resource, and EODC without Chiller."""

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from s2_assets.definitions import build_definitions
from s2_assets.demo.products import DEMO_PRODUCTS
from s2_assets.demo.quickstart import DEMO_COLUMNS, DEMO_SETTINGS
from s2_assets.errors import StagingError
from s2_assets.jobs.backfill import requested_partitions
from s2_assets.jobs.writer import job_text
from s2_assets.library.tree import Library
from s2_assets.partitions import TileDate
from s2_assets.resources.chiller import ChillerResource
from s2_assets.settings import Settings
from s2_assets_tests.chiller_standin import ChillerStandIn, ColdArchive, is_cold
from s2_assets_tests.conftest import DemoArchive

JOB_TEXT = job_text(
    replace(DEMO_SETTINGS, timing="30 2 * * 1", provider="eodc"),
    DEMO_COLUMNS,
    ["40KCB;2022-01-01;2022-02-10;80;eodc;True;l2a;False;;;;Reunion from tape"],
)
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
L2A = dg.AssetKey("l2a")
# The L2A the task takes (newest baseline of each acquisition); cloud cover is unknown until
# staged, so 2022-02-04 (90 %, over the 80 % limit) is staged too and refused when read.
TAKEN = {
    "2022-01-20": "S2A_MSIL2A_20220120T063511_N0301_R120_T40KCB_20220120T083511",
    "2022-01-25": "S2B_MSIL2A_20220125T063509_N0400_R120_T40KCB_20220125T083509",
    "2022-01-30": "S2B_MSIL2A_20220130T063511_N0509_R120_T40KCB_20220130T083511",
    "2022-02-04": "S2A_MSIL2A_20220204T063509_N0400_R120_T40KCB_20220204T083509",
}


@dataclass
class Eodc:
    """One test's world: definitions, instance, cold tree, stand-in, library."""

    defs: dg.Definitions
    instance: dg.DagsterInstance
    tree: ColdArchive
    chiller: ChillerStandIn | None
    library: Path

    def zip_of(self, day: str) -> str:
        return str(self.tree.path_for(TAKEN[day]))


def make_world(
    tmp_path: Path, demo_archive: DemoArchive, *, cold: bool, chiller: bool
) -> Iterator[Eodc]:
    tree = ColdArchive(tmp_path)
    for product in DEMO_PRODUCTS:
        if product.tile == "40KCB":
            tree.add(demo_archive.zip_of(product), cold=cold)
    library = tmp_path / "library"
    jobs_dir = Library(library).jobs_dir
    jobs_dir.mkdir(parents=True)
    (jobs_dir / "job_reunion.cfg").write_text(JOB_TEXT)
    with ChillerStandIn(tmp_path, archive=tree) as standin, dg.instance_for_test() as instance:
        settings = Settings(
            data_home=library,
            eodc_root=str(tree.root),
            date_start="2022-01-01",
            chiller_url=standin.url if chiller else "",
        )
        yield Eodc(
            build_definitions(settings), instance, tree, standin if chiller else None, library
        )


@pytest.fixture
def eodc(tmp_path: Path, demo_archive: DemoArchive) -> Iterator[Eodc]:
    """EODC with Chiller: every product cold until staged."""
    yield from make_world(tmp_path, demo_archive, cold=True, chiller=True)


@pytest.fixture
def eodc_direct(tmp_path: Path, demo_archive: DemoArchive) -> Iterator[Eodc]:
    """EODC without a Chiller URL: products are read directly (here: already on disk)."""
    yield from make_world(tmp_path, demo_archive, cold=False, chiller=False)


def discover(world: Eodc) -> None:
    """The job's schedule tick, then its acquisitions runs."""
    schedule = world.defs.get_schedule_def("reunion_schedule")
    context = dg.build_schedule_context(
        instance=world.instance,
        scheduled_execution_time=datetime(2022, 2, 7, 2, 30, tzinfo=UTC),
        repository_def=world.defs.get_repository_def(),
    )
    requests = list(schedule.evaluate_tick(context).run_requests or [])
    assert [
        (r.partition_key, r.run_config["ops"]["acquisitions"]["config"]["provider"])
        for r in requests
    ] == [("40KCB", "eodc")]
    job = world.defs.resolve_job_def("reunion_job")
    for request in requests:
        result = job.execute_in_process(
            instance=world.instance,
            partition_key=request.partition_key,
            run_config=request.run_config,
            tags=request.tags,
        )
        assert result.success


def sense(
    world: Eodc, name: str, cursor: str | None, chiller: ChillerResource | None = None
) -> dg.SensorResult:
    resources = dict(world.defs.resources or {})
    if chiller is not None:
        resources["chiller"] = chiller
    sensor = world.defs.get_sensor_def(name)
    with dg.build_sensor_context(
        instance=world.instance, definitions=world.defs, cursor=cursor, resources=resources
    ) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def stage(
    world: Eodc, cursor: str | None, chiller: ChillerResource | None = None, ticks: int = 8
) -> list[dg.SensorResult]:
    """Tick staging_sensor until it launches or reports a lost file (at most ``ticks``)."""
    results = []
    for _ in range(ticks):
        results.append(sense(world, "staging_sensor", cursor, chiller))
        cursor = results[-1].cursor
        if results[-1].run_requests or results[-1].asset_events:
            break
    return results


def stretches(keys: set[str]) -> list[tuple[str, str]]:
    """Contiguous (first, last) day ranges per tile, as the backfill daemon splits them."""
    parsed = sorted((TileDate.parse(k) for k in keys), key=lambda k: (k.tile, k.date))
    ranges: list[list[TileDate]] = []
    for key in parsed:
        last = ranges[-1][-1] if ranges else None
        if last and last.tile == key.tile and key.date - last.date == timedelta(days=1):
            ranges[-1].append(key)
        else:
            ranges.append([key])
    return [(str(r[0]), str(r[-1])) for r in ranges]


def execute_backfill(world: Eodc, request: dg.RunRequest) -> int:
    """What the backfill daemon does with BackfillPolicy.single_run: one ranged run per
    contiguous stretch of each tile. Returns the number of runs."""
    covered = requested_partitions(request)
    job = world.defs.resolve_implicit_global_asset_job_def()
    runs = stretches({k for parts in covered.values() for k in parts})
    for first, last in runs:
        result = job.execute_in_process(
            instance=world.instance,
            asset_selection=sorted(covered),
            tags={**request.tags, RANGE_START: first, RANGE_END: last},
        )
        assert result.success
    return len(runs)


def days(first: str, last: str) -> set[str]:
    start, end = datetime.fromisoformat(first), datetime.fromisoformat(last)
    return {
        f"{(start + timedelta(n)).date().isoformat()}|40KCB" for n in range((end - start).days + 1)
    }


def held_l2a(world: Eodc) -> list[str]:
    folder = world.library / "data" / "L2A" / "40KCB"
    return sorted(p.name.removesuffix(".SAFE") for p in folder.iterdir()) if folder.is_dir() else []


def test_tape_products_reach_l2a_through_one_staging_backfill(
    eodc: Eodc, capsys: pytest.CaptureFixture[str]
) -> None:
    assert eodc.chiller is not None
    lost = eodc.zip_of("2022-01-25")
    eodc.chiller.not_staged = {lost}
    discover(eodc)

    # Chiller is configured: new_acquisitions_sensor leaves the eodc products alone.
    plain = sense(eodc, "new_acquisitions_sensor", None)
    assert not plain.run_requests

    results = stage(eodc, None)
    # One upload, on the first tick, of exactly the zips the task takes; never again.
    (upload,) = eodc.chiller.uploads
    assert upload.body.split("\n") == sorted(eodc.zip_of(d) for d in TAKEN)
    assert not results[0].run_requests and len(results) == 4  # submit, Queued, Running, Finished
    last = results[-1]
    (backfill,) = last.run_requests
    covered = requested_partitions(backfill)
    # Exactly the staged partitions, their tile's span filled with the empty days between
    # them, and cut at the day whose file was not staged.
    assert covered == {L2A: days("2022-01-20", "2022-02-04") - {"2022-01-25|40KCB"}}
    (job_id,) = eodc.chiller.jobs
    assert backfill.tags == {
        "s2/job": "reunion",
        "s2/task": "0",
        "s2/staging_jobs": job_id,
        "s2/staging_not_staged": "1",
        "s2/staging_dropped_partitions": "1",
    }
    # The file not staged: in the UI (an observation on its partition), the cursor, the log.
    (event,) = last.asset_events
    assert isinstance(event, dg.AssetObservation)
    assert (event.asset_key, event.partition) == (L2A, "2022-01-25|40KCB")
    assert event.metadata["not_staged"] == dg.MetadataValue.json([lost])
    cursor = json.loads(last.cursor or "")
    assert list(cursor["ledger"]["lost"]) == [lost]
    assert not cursor["ledger"]["partitions"] and not cursor["ledger"]["jobs"]
    assert f"not staged: {lost}" in capsys.readouterr().err
    assert is_cold(lost)

    assert execute_backfill(eodc, backfill) == 2  # 01-20..01-24 and 01-26..02-04
    # 02-04 was staged, read, and refused by the 80 % cloud limit (90 %): cloud cover is
    # applied once the zip is readable.
    assert not is_cold(eodc.zip_of("2022-02-04"))
    assert held_l2a(eodc) == [TAKEN["2022-01-20"], TAKEN["2022-01-30"]]

    # The next tick's refresh: the job still wants 01-25, so exactly the file that was not
    # staged goes to Chiller again (failures converge); nothing else is staged twice.
    eodc.chiller.not_staged = set()
    discover(eodc)
    again = stage(eodc, last.cursor, ticks=4)
    assert len(eodc.chiller.uploads) == 2
    assert eodc.chiller.uploads[1].body.split("\n") == [lost]
    (retry,) = again[-1].run_requests
    assert requested_partitions(retry) == {L2A: {"2022-01-25|40KCB"}}
    execute_backfill(eodc, retry)
    assert TAKEN["2022-01-25"] in held_l2a(eodc)


def test_error_job_reports_every_file_and_launches_nothing(eodc: Eodc) -> None:
    assert eodc.chiller is not None
    eodc.chiller.error = True
    eodc.chiller.reply_url = True  # the SDK's reply shape: a polling URL
    discover(eodc)
    results = stage(eodc, None)
    last = results[-1]
    assert not any(r.run_requests for r in results)
    assert "4 file(s) not staged" in (last.skip_reason.skip_message or "")
    assert {e.partition for e in last.asset_events} == {f"{d}|40KCB" for d in TAKEN}
    lost = json.loads(last.cursor or "")["ledger"]["lost"]
    assert sorted(lost) == sorted(eodc.zip_of(d) for d in TAKEN)
    assert all("failed: Chiller state ERROR" in why for why in lost.values())
    (job_id,) = eodc.chiller.jobs
    assert f"GET /jobs/{job_id}" in eodc.chiller.requests
    # Given up is given up: later ticks neither resubmit nor launch.
    later = stage(eodc, last.cursor, ticks=2)
    assert not any(r.run_requests for r in later) and len(eodc.chiller.uploads) == 1
    assert held_l2a(eodc) == []


def test_staging_is_throttled_by_the_resource(eodc: Eodc) -> None:
    assert eodc.chiller is not None
    throttled = ChillerResource(url=eodc.chiller.url, chunk_size=2, max_open_jobs=1)
    discover(eodc)
    first = stage(eodc, None, throttled)
    # One job of two files at a time; the next is submitted only when the first has ended.
    assert [len(u.body.split("\n")) for u in eodc.chiller.uploads] == [2, 2]
    (early,) = first[-1].run_requests
    assert requested_partitions(early) == {L2A: days("2022-01-20", "2022-01-25")}
    second = stage(eodc, first[-1].cursor, throttled)
    (late,) = second[-1].run_requests
    assert requested_partitions(late) == {L2A: days("2022-01-30", "2022-02-04")}
    assert len(eodc.chiller.uploads) == 2
    assert execute_backfill(eodc, early) == 1 and execute_backfill(eodc, late) == 1
    assert held_l2a(eodc) == [TAKEN[d] for d in ("2022-01-20", "2022-01-25", "2022-01-30")]


def test_without_chiller_eodc_products_go_straight_through(eodc_direct: Eodc) -> None:
    resources = eodc_direct.defs.resources or {}
    assert not resources["chiller"].enabled
    # The sensor is there (its name resolves for `dagster sensor cursor ... --delete`) and skips.
    with dg.build_sensor_context(
        instance=eodc_direct.instance, definitions=eodc_direct.defs, resources=dict(resources)
    ) as context:
        skipped = eodc_direct.defs.get_sensor_def("staging_sensor")(context)
    assert isinstance(skipped, dg.SkipReason)
    assert skipped.skip_message == "no Chiller URL set: EODC products are read directly"
    discover(eodc_direct)
    (backfill,) = sense(eodc_direct, "new_acquisitions_sensor", None).run_requests
    # Cloud cover is unknown in EODC's listing, so 02-04 is launched and refused when read.
    assert requested_partitions(backfill) == {L2A: days("2022-01-20", "2022-02-04")}
    assert execute_backfill(eodc_direct, backfill) == 1
    assert held_l2a(eodc_direct) == [TAKEN[d] for d in ("2022-01-20", "2022-01-25", "2022-01-30")]


def test_unreadable_cursor_fails_the_tick_naming_it(eodc: Eodc) -> None:
    with pytest.raises(StagingError, match=r"unreadable staging_sensor cursor.*after, ledger"):
        sense(eodc, "staging_sensor", '{"version": 1, "after": -3}')


def test_run_now_on_an_eodc_job_stages_before_it_reads(eodc: Eodc) -> None:
    """Before: ``s2-assets run`` ignored Chiller and read four cold tape files."""
    from s2_assets.jobs.run_now import run_job_now

    assert eodc.chiller is not None
    lost = eodc.zip_of("2022-01-25")
    eodc.chiller.not_staged = {lost}
    fast = ChillerResource(url=eodc.chiller.url, poll_interval_s=0.05, timeout_s=60)
    summary = run_job_now(eodc.defs, eodc.instance, Library(eodc.library), "reunion", chiller=fast)
    # Staged first, in one job, exactly the files the task takes; the one not staged is
    # reported and its partition never read (a cold read fails the run: it did not).
    (upload,) = eodc.chiller.uploads
    assert upload.body.split("\n") == sorted(eodc.zip_of(d) for d in TAKEN)
    assert summary.not_staged == (lost,)
    assert is_cold(lost)
    assert held_l2a(eodc) == [TAKEN["2022-01-20"], TAKEN["2022-01-30"]]
    assert "2022-01-25|40KCB" in {str(k) for k in summary.plan.to_stage}
