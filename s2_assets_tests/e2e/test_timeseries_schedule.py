"""End to end: an extraction job file (``config/jobs_extr/job_e2e.cfg``) runs on its schedule.

The services (PostgreSQL, dagster-webserver, dagster-daemon from ``deploy/services.sh``)
are (re)started after the job file, its polygons and a tile's masked NDVI are in the
library, so the code location loads the job file. The schedule is started through GraphQL,
as the UI's toggle does; the daemon's scheduler ticks it at the next minute, registers the
tile the polygons touch (``40KEB``, not one of the demo's) and launches the ``timeseries``
run, which writes the CSV and NetCDF. Runs after ``test_services.py`` (file order), which
stops the services at its end, so the extra tile never shows in its partition counts.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest

from s2_assets.library.tree import Library
from s2_assets_tests.e2e.conftest import START_TIMEOUT_S, Deployment
from s2_assets_tests.e2e.graphql import REPOSITORY, GraphQL, GraphQLError, poll
from s2_assets_tests.test_timeseries import NAMES, SHAPES, add_product, l2a_id, write_geojson

pytestmark = pytest.mark.skipif(
    os.environ.get("S2_E2E") != "1",
    reason="end-to-end against PostgreSQL, webserver and daemon: run .ci/e2e.sh",
)

JID = "e2e"
TILE = "40KEB"
SCHEDULE = f"{JID}_extraction_schedule"
RUN_TIMEOUT_S = 240  # the next minute's tick, plus the run's own start-up and work
JOB_FILE = """logs = False
timing = * * * * *

shapefile;date_min;date_max;max_clouds;cloudmasks;indices;force_extraction;compiled_data;smooth_data;copy_server
e2e_fields.geojson;2024-01-01;;100;CM001;NDVI;False;monthly;True;
"""
NAME = "e2e_fields-geojson_NDVI_CM001_2024-01-01_9999-12-31"

START_SCHEDULE = """mutation($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) { __typename
    ... on ScheduleStateResult { scheduleState { id status } } ... on PythonError { message } } }"""

STOP_SCHEDULE = """mutation($id: String!) {
  stopRunningSchedule(id: $id) { __typename
    ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }"""

TAGGED_RUNS = """query($value: String!) {
  runsOrError(filter: {tags: [{key: "s2/extraction", value: $value}]}) {
    ... on Runs { results { runId status tags { key value } } } } }"""


@pytest.fixture(scope="module")
def restarted(deployment: Deployment) -> Iterator[Deployment]:
    """The job file, its polygons and 40KEB's NDVI in the library, then the services
    (re)started so the code location reads the job file; stopped again at the end."""
    library = Library(deployment.library)
    write_geojson(deployment.library / "e2e_fields.geojson", SHAPES[:2], NAMES[:2])
    jobs = deployment.library / "config" / "jobs_extr"
    jobs.mkdir(parents=True, exist_ok=True)
    (jobs / f"job_{JID}.cfg").write_text(JOB_FILE)
    add_product(library, TILE)
    stopped = deployment.services("stop")
    assert stopped.returncode == 0, f"services.sh stop:\n{stopped.stdout}\n{stopped.stderr}"
    with deployment.running():
        yield deployment


def test_extraction_job_file_runs_on_its_schedule_and_writes_its_csv(
    restarted: Deployment, instance: dg.DagsterInstance
) -> None:
    graphql = GraphQL(restarted.base_url)
    graphql.wait_until_loaded(timeout_s=START_TIMEOUT_S)
    selector = {**REPOSITORY, "scheduleName": SCHEDULE}
    started = graphql(START_SCHEDULE, selector=selector)["startSchedule"]
    if started.get("scheduleState", {}).get("status") != "RUNNING":
        raise GraphQLError(f"starting {SCHEDULE}: {started}")
    runs: list[dict[str, Any]] = []
    try:

        def succeeded() -> str | None:
            runs[:] = graphql(TAGGED_RUNS, value=JID)["runsOrError"]["results"]
            for run in runs:
                if run["status"] in ("FAILURE", "CANCELED"):
                    detail = "\n".join(graphql.run_messages(run["runId"])[-30:])
                    raise GraphQLError(f"run {run['runId']} {run['status']}:\n{detail}")
            done = [r for r in runs if r["status"] == "SUCCESS" and _partition(r) == TILE]
            return None if done else f"runs of {SCHEDULE}: {[r['status'] for r in runs]}"

        poll(succeeded, RUN_TIMEOUT_S, interval_s=3.0)
    finally:
        state_id = started["scheduleState"]["id"]
        stopped = graphql(STOP_SCHEDULE, id=state_id)["stopRunningSchedule"]
        assert stopped.get("scheduleState", {}).get("status") == "STOPPED", stopped

    # Other tests of the deployment may have put products of other tiles under the polygons
    # (synthetic tiles share one grid); the run of the tile this test put there is the one.
    run = next(r for r in runs if r["status"] == "SUCCESS" and _partition(r) == TILE)
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/schedule_name"] == SCHEDULE
    assert TILE in instance.get_dynamic_partitions("tiles")  # registered by the tick

    folder = restarted.library / "data" / "EXTRACTION" / "e2e_fields-geojson"
    with open(folder / f"{NAME}.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["tile"] == TILE]
    assert [(r["fid"], r["tile"], r["name"]) for r in rows] == [("0", TILE, "a"), ("1", TILE, "b")]
    assert rows[0]["filename"] == f"{l2a_id(TILE)}_NDVI_CM001.tif"
    assert rows[0]["date"] == "2024-03-05 06:35:11" and "smoothed" in rows[0]
    assert (folder / f"{NAME}.nc").is_file()
    assert (folder / "compiled" / "monthly" / f"{NAME}_2024-03.csv").is_file()


def _partition(run: dict[str, Any]) -> str | None:
    """The tile a ``timeseries`` run covers (its partition tag)."""
    return next((t["value"] for t in run["tags"] if t["key"] == "dagster/partition"), None)
