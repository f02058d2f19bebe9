"""Job files driving Dagster: schedule tick -> acquisitions -> sensor -> one backfill -> products."""

from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest

from s2_assets.definitions import build_definitions
from s2_assets.demo.products import DEMO_PRODUCTS, DemoProduct, build_archive
from s2_assets.demo.quickstart import DEMO_COLUMNS, DEMO_SETTINGS
from s2_assets.jobs.backfill import requested_partitions
from s2_assets.jobs.writer import job_text
from s2_assets.library.tree import Library
from s2_assets.settings import Settings
from s2_assets_tests.jobs.driver import execute_backfill, run_requests, sense, tick

JOB_TEXT = job_text(
    replace(DEMO_SETTINGS, timing="30 2 * * 1"),
    DEMO_COLUMNS,
    ["40KCB;2022-01-01;2022-02-10;80;archive;True;l2a;False;;;;Reunion"],
)


@pytest.fixture
def setup(tmp_path: Path):
    archive = tmp_path / "archive"
    products = [p for p in DEMO_PRODUCTS if p.tile == "40KCB"]
    build_archive(archive, products, size=12)
    library = tmp_path / "library"
    jobs_dir = Library(library).jobs_dir
    jobs_dir.mkdir(parents=True)
    (jobs_dir / "job_reunion.cfg").write_text(JOB_TEXT)
    (jobs_dir / "job_broken.cfg").write_text("logs = maybe\n")
    settings = Settings(data_home=library, archive_root=str(archive), date_start="2022-01-01")
    with dg.instance_for_test() as instance:
        yield build_definitions(settings), instance, archive, library


def test_tick_sensor_backfill_cycle(setup) -> None:
    defs, instance, archive, library = setup
    requests = tick(defs, instance)
    assert [r.partition_key for r in requests] == ["40KCB"]
    assert requests[0].tags["s2/job"] == "reunion"
    assert requests[0].run_config["ops"]["acquisitions"]["config"]["end"] == "2022-02-07"
    assert "40KCB" in instance.get_dynamic_partitions("tiles")
    run_requests(defs, instance, requests)

    result = sense(defs, instance, None)
    assert isinstance(result, dg.SensorResult)
    (backfill,) = result.run_requests
    covered = requested_partitions(backfill)
    # download = l2a only; products on 01-20, 01-25, 01-30; 02-04 (90 % cloud) is over the limit.
    assert set(covered) == {dg.AssetKey("l2a")}
    days = sorted(k.split("|")[0] for k in covered[dg.AssetKey("l2a")])
    assert days[0] == "2022-01-20" and days[-1] == "2022-01-30" and len(days) == 11
    assert backfill.tags["s2/job"] == "reunion"

    execute_backfill(defs, instance, backfill)
    held = sorted(p.name for p in (library / "data" / "L2A" / "40KCB").iterdir())
    assert len(held) == 3 and all("N0301" in n or "N0400" in n or "N0509" in n for n in held)
    assert not (library / "data" / "L1C").exists()

    # A second tick finds nothing new: the sensor launches nothing, cursor moves on.
    run_requests(defs, instance, tick(defs, instance))
    again = sense(defs, instance, result.cursor)
    assert not again.run_requests

    # A new product on a later date launches only that partition.
    late = DemoProduct(
        "L2A", "40KCB", datetime(2022, 2, 6, 6, 35, 9, tzinfo=UTC), "04.00", 120, "S2A", 10.0
    )
    build_archive(archive, [late], size=12)
    run_requests(defs, instance, tick(defs, instance))
    third = sense(defs, instance, again.cursor)
    (request,) = third.run_requests
    assert requested_partitions(request) == {dg.AssetKey("l2a"): {"2022-02-06|40KCB"}}


def test_broken_job_file_leaves_the_others_working(setup) -> None:
    defs, instance, _, _ = setup
    broken = defs.get_schedule_def("broken_schedule")
    assert "BROKEN" in (broken.description or "") and "job_broken.cfg" in broken.description
    context = dg.build_schedule_context(instance=instance, repository_def=defs.get_repository_def())
    skip = broken.evaluate_tick(context)
    assert skip.skip_message and "job_broken.cfg" in skip.skip_message
    assert defs.get_schedule_def("reunion_schedule").cron_schedule == "30 2 * * 1"


def test_backfill_request_uses_the_private_api_we_depend_on() -> None:
    """Fails loudly if a Dagster upgrade moves or changes RunRequest.for_asset_graph_subset."""
    assert hasattr(dg.RunRequest, "for_asset_graph_subset")
    assert date(2022, 1, 1)  # keep the import used
