"""End to end on a Celery cluster: ``S2_EXECUTOR=deploy/executors/celery.yaml``, Redis with a
password, two ``celery worker`` processes apart from the daemon, webserver and daemon on
PostgreSQL (a database of its own on the package's server), backfills through GraphQL.

What it shows: every step of the backfill ran in a worker (the pid of each step's events is
a worker's), the library it leaves is byte for byte the one an in-process run leaves, and a
worker killed in the middle of a step leaves no half-written product under a final name,
while launching the backfill again completes it on the surviving worker.
Run with ``.ci/e2e.sh`` (it installs Redis and the ``celery`` extra and sets ``S2_E2E=1``).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from s2_assets.definitions import build_definitions
from s2_assets.demo.products import DEMO_PRODUCTS, DEMO_TILES, build_archive
from s2_assets.jobs.run_now import run_ranges
from s2_assets.partitions import TileDate
from s2_assets.settings import Settings
from s2_assets.specs import INDEX_NAMES
from s2_assets_tests.e2e.celery_cluster import (
    CeleryWorker,
    RedisServer,
    start_redis,
    start_worker,
)
from s2_assets_tests.e2e.conftest import DATE_START, DEMO_SIZE, REPO, START_TIMEOUT_S, Deployment
from s2_assets_tests.e2e.graphql import FINISHED_BACKFILL, GraphQL, poll
from s2_assets_tests.e2e.postgres import PostgresServer, free_port, pid_alive

pytestmark = pytest.mark.skipif(
    os.environ.get("S2_E2E") != "1",
    reason="end-to-end on Redis, Celery workers, PostgreSQL, webserver and daemon: .ci/e2e.sh",
)

ASSETS = ("l2a", "cloudmask", *(name.lower() for name in INDEX_NAMES))
# 2 tiles x 16 days: the span of 40KCB's products, for both tiles.
FIRST, LAST = date(2022, 1, 20), date(2022, 2, 4)
TIMEOUT_S = 600
WORKERS = ("s2w1", "s2w2")
DATABASE = "dagster_celery"

TERMINATE = """mutation($id: String!) { terminateRun(runId: $id) { __typename
  ... on TerminateRunSuccess { run { runId } } ... on TerminateRunFailure { message }
  ... on PythonError { message } } }"""
RUN_STATUS = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
FREE_SLOTS = """mutation($id: String!) { freeConcurrencySlotsForRun(runId: $id) }"""


@dataclass
class Cluster:
    """The running deployment, its workers and its broker."""

    deployment: Deployment
    workers: dict[str, CeleryWorker]
    redis: RedisServer
    graphql: GraphQL


def day_keys() -> list[TileDate]:
    return [
        TileDate(tile, FIRST + timedelta(n))
        for tile in DEMO_TILES
        for n in range((LAST - FIRST).days + 1)
    ]


def create_database(server: PostgresServer, name: str) -> None:
    import psycopg2

    connection = psycopg2.connect(
        host="127.0.0.1", port=server.port, user=server.user, password=server.password,
        dbname="postgres",
    )  # fmt: skip
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
    finally:
        connection.close()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("celery-archive")
    build_archive(path, DEMO_PRODUCTS, size=DEMO_SIZE)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, archive: Path) -> Path:
    """The library an in-process run of the same backfill leaves (ephemeral instance)."""
    library = tmp_path_factory.mktemp("celery-reference")
    defs = build_definitions(
        Settings(data_home=library, archive_root=str(archive), date_start=DATE_START),
        dg.in_process_executor,
    )
    job = defs.resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("tiles", list(DEMO_TILES))
    for tile in DEMO_TILES:
        done = job.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("acquisitions")], partition_key=tile
        )
        assert done.success
    run_ranges(job, instance, ASSETS, day_keys(), {})
    return library


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer, archive: Path
) -> Iterator[Cluster]:
    """Redis, two workers, webserver and daemon; all stopped by pid at the end."""
    base = tmp_path_factory.mktemp("celery")
    home, library, run_dir = base / "dagster_home", base / "library", base / "services"
    for folder in (home, library, run_dir):
        folder.mkdir()
    shutil.copyfile(REPO / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    create_database(postgres, DATABASE)
    redis = start_redis(base / "redis")
    workers: dict[str, CeleryWorker] = {}
    deployment: Deployment | None = None
    try:
        env = {key: value for key, value in os.environ.items() if not key.startswith("S2_")}
        env.update(postgres.environment())
        env.update(redis.environment())
        env.update(
            {
                "DAGSTER_PG_DB": DATABASE,
                "DAGSTER_HOME": str(home),
                "S2_DATA_HOME": str(library),
                "S2_ARCHIVE_ROOT": str(archive),
                "S2_DATE_START": DATE_START,
                "S2_EXECUTOR": str(REPO / "deploy" / "executors" / "celery.yaml"),
                "S2_WEBSERVER_PORT": str(free_port()),
                "S2_VENV_BIN": str(Path(sys.executable).parent),
                "S2_RUN_DIR": str(run_dir),
                "S2_START_TIMEOUT": str(START_TIMEOUT_S),
                # What services.sh gives the daemon and its runs; the workers write the
                # step events, so they get the same (docs/scale-out.md).
                "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
                "DAGSTER_EVENT_BATCH_SIZE": "1000",
            }
        )
        deployment = Deployment(home=home, library=library, archive=archive, env=env)
        for name in WORKERS:
            workers[name] = start_worker(name, env, run_dir, Path(sys.executable).parent)
        started = deployment.services("start")
        assert started.returncode == 0, f"services.sh start:\n{started.stdout}\n{started.stderr}"
        graphql = GraphQL(deployment.base_url)
        graphql.wait_until_loaded(timeout_s=START_TIMEOUT_S)
        yield Cluster(deployment, workers, redis, graphql)
    finally:
        if deployment is not None:
            stopped = deployment.services("stop")
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        for worker in workers.values():
            worker.stop()
        redis.stop()


@pytest.fixture(scope="module")
def instance(cluster: Cluster) -> Iterator[dg.DagsterInstance]:
    """The cluster's instance (its own Postgres database), opened from this process."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in cluster.deployment.env.items():
            if key.startswith("DAGSTER_PG_"):
                patch.setenv(key, value)
        with dg.DagsterInstance.from_config(str(cluster.deployment.home)) as opened:
            yield opened


def backfill(graphql: GraphQL, title: str, tiles: tuple[str, ...] = DEMO_TILES) -> str:
    """One backfill of the catalogues and the products of ``tiles`` (the daemon runs the
    catalogues first, then one ranged run per tile)."""
    ranges = [{"start": f"{FIRST}|{t}", "end": f"{LAST}|{t}"} for t in tiles]
    catalogues = {
        "assetKey": {"path": ["acquisitions"]},
        "partitions": {"ranges": [{"start": t, "end": t} for t in tiles]},
    }
    products = [{"assetKey": {"path": [name]}, "partitions": {"ranges": ranges}} for name in ASSETS]
    return graphql.launch_backfill({"partitionsByAssets": [catalogues, *products], "title": title})


def library_files(root: Path) -> dict[str, bytes]:
    """Every file under ``data/`` by relative path; provenance records without their
    processing date and the run that made them (the values that differ between two runs by
    design)."""
    files = {}
    for path in sorted((root / "data").rglob("*")):
        if not path.is_file():
            continue
        content = path.read_bytes()
        if path.suffix == ".xml" and b"<PROCESSING_DATE>" in content:
            content = re.sub(rb"<PROCESSING_DATE>[^<]*</PROCESSING_DATE>", b"", content)
        if path.suffix == ".xml":
            content = re.sub(rb"<S2_ASSETS_RUN>[^<]*</S2_ASSETS_RUN>", b"", content)
        files[str(path.relative_to(root))] = content
    return files


def is_scratch(path: str) -> bool:
    """A file being written: the library writes hidden files beside the final name
    (``.<name>.<pid>-<random>.scratch.*``, ``.<name>.<pid>-<random>.part.tif``), then renames."""
    name = Path(path).name
    return name.startswith(".") and (".scratch" in name or ".part." in name)


def step_pids(instance: dg.DagsterInstance, run_id: str) -> dict[str, set[int]]:
    """The pids of each step's STEP_START and materialization events."""
    pids: dict[str, set[int]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None or event.pid is None:
            continue
        if event.event_type_value in ("STEP_START", "ASSET_MATERIALIZATION", "STEP_SUCCESS"):
            pids.setdefault(event.step_key, set()).add(event.pid)
    return pids


def worker_hosts(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    """The ``Celery worker`` hostnames the tasks of a run report."""
    hosts = set()
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        data = getattr(event, "event_specific_data", None) if event else None
        metadata = getattr(data, "metadata", None) or {}
        if "Celery worker" in metadata:
            hosts.add(str(metadata["Celery worker"].value).split("@")[0])
    return hosts


@dataclass(frozen=True)
class Interrupted:
    """The first backfill, during which a worker was killed mid-step."""

    backfill_id: str
    killed: CeleryWorker
    library_at_kill: dict[str, bytes]
    runs: list[dict[str, object]]


@pytest.fixture(scope="module")
def interrupted(cluster: Cluster, instance: dg.DagsterInstance) -> Interrupted:
    """Register the tiles, pause the discovery and composite sensors, launch the backfill;
    when the first index file appears, SIGKILL the worker running the latest step (and its
    pool child); then terminate the runs left waiting for it, as an operator would."""
    graphql = cluster.graphql
    for tile in DEMO_TILES:
        graphql.add_tile(tile)
    # Only the backfills run: the composite sensor would add COMPOSITES/ (not in the
    # in-process reference) whenever it ticks between a backfill's end and the comparison.
    graphql.stop_sensor("new_acquisitions_sensor")
    graphql.stop_sensor("composite_automation_sensor")
    backfill_id = backfill(graphql, "e2e celery: a worker dies")
    indices = cluster.deployment.library / "data" / "INDICES"

    def index_file_written() -> str | None:
        runs = graphql.backfill_runs(backfill_id)
        failed = [r["runId"] for r in runs if r["status"] in ("FAILURE", "CANCELED")]
        assert not failed, "\n".join(graphql.run_messages(failed[0])[-30:])
        return None if any(indices.glob("*/*/*/*.tif")) else "no index file yet"

    started = time.monotonic()
    poll(index_file_written, TIMEOUT_S, interval_s=0.2)
    busy = busy_worker(instance, graphql.backfill_runs(backfill_id), cluster.workers)
    busy.kill()
    snapshot = library_files(cluster.deployment.library)
    print(
        f"killed worker {busy.name} (pids {sorted(busy.pids)}) mid-step after {time.monotonic() - started:.0f} s"
    )
    terminate_stuck_runs(graphql, backfill_id)
    print(f"interrupted backfill finished after {time.monotonic() - started:.0f} s")
    return Interrupted(backfill_id, busy, snapshot, graphql.backfill_runs(backfill_id))


def test_a_worker_killed_mid_step_leaves_no_half_written_product(
    interrupted: Interrupted, reference: Path
) -> None:
    assert not any(pid_alive(pid) for pid in interrupted.killed.pids)
    want = library_files(reference)
    at_kill = interrupted.library_at_kill
    assert any(p.endswith(".tif") and "/INDICES/" in p for p in at_kill)
    assert len([p for p in at_kill if p.endswith(".tif")]) < len(
        [p for p in want if p.endswith(".tif")]
    ), "the step was not interrupted: every product was there already"
    # What a killed writer leaves: its hidden scratch files (".<name>.<pid>-<random>.scratch.*"),
    # which the library's clean removes; never a partial file under a final name.
    finals = {path: content for path, content in at_kill.items() if not is_scratch(path)}
    half_written = [path for path, content in finals.items() if want.get(path) != content]
    assert not half_written, f"final names not holding the finished product: {half_written}"
    # A product is its file and its provenance record, the record written first: no file
    # under a final name without its record (which a re-run would take as complete).
    unrecorded = [
        path
        for path in finals
        if (path.endswith(".tif") and Path(path).with_suffix(".xml").as_posix() not in finals)
        or (
            path.endswith(".SAFE/manifest.safe")
            and path.replace("manifest.safe", "sen2chain_info.xml") not in finals
        )
    ]
    assert not unrecorded, f"products without their provenance record: {unrecorded}"
    print(f"at the kill: {len(finals)} finished files, {len(at_kill) - len(finals)} scratch files")
    statuses = {str(r["status"]) for r in interrupted.runs}
    assert statuses <= {"SUCCESS", "CANCELED"} and "CANCELED" in statuses, statuses


def test_a_rerun_completes_in_the_workers(
    cluster: Cluster, instance: dg.DagsterInstance, interrupted: Interrupted, reference: Path
) -> None:
    graphql = cluster.graphql
    started = time.monotonic()
    # What an operator re-runs: the tiles whose runs did not succeed.
    tiles = tuple(
        tile
        for tile in DEMO_TILES
        if any(r["status"] != "SUCCESS" and f"|{tile}" in str(r["tags"]) for r in interrupted.runs)
    )
    assert tiles
    again = backfill(graphql, "e2e celery: again", tiles)
    runs = graphql.wait_for_backfill(again, TIMEOUT_S)
    print(f"celery re-run backfill: {time.monotonic() - started:.0f} s")
    assert {r["status"] for r in runs} == {"SUCCESS"}
    assert graphql.backfill_status(again) == "COMPLETED_SUCCESS"

    worker_pids = set().union(*(w.remember_pids() for w in cluster.workers.values()))
    hosts: set[str] = set()
    for run in [*interrupted.runs, *runs]:
        run_id = str(run["runId"])
        for step, seen in step_pids(instance, run_id).items():
            assert seen <= worker_pids, f"step {step} ran in {seen}, workers are {worker_pids}"
        hosts |= worker_hosts(instance, run_id)
    assert hosts == set(WORKERS), hosts
    print(f"steps ran in workers {sorted(hosts)}, pids {sorted(worker_pids)}")

    secret = cluster.redis.password
    for log in cluster.deployment.run_dir.glob("*.log"):
        assert secret not in log.read_text(errors="replace"), log
    for run in [*interrupted.runs, *runs]:
        assert all(secret not in (e.message or "") for e in instance.all_logs(str(run["runId"])))


def busy_worker(
    instance: dg.DagsterInstance, runs: list[dict[str, object]], workers: dict[str, CeleryWorker]
) -> CeleryWorker:
    """The worker whose pid started the latest step of ``runs`` that has not finished."""
    started: dict[tuple[str, str], tuple[float, int]] = {}
    finished: set[tuple[str, str]] = set()
    for run in runs:
        for entry in instance.all_logs(str(run["runId"])):
            event = entry.dagster_event
            if event is None or event.pid is None or event.step_key is None:
                continue
            step = (str(run["runId"]), event.step_key)
            if event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
                finished.add(step)
            elif event.event_type_value == "STEP_START":
                started[step] = (entry.timestamp, event.pid)
    running = [started[step] for step in started if step not in finished]
    assert running, "no step running"
    pid = max(running)[1]
    for worker in workers.values():
        if pid in worker.remember_pids():
            return worker
    raise AssertionError(f"pid {pid} is no worker's")


def terminate_stuck_runs(graphql: GraphQL, backfill_id: str) -> None:
    """Terminate every run of the backfill still going once nothing moves: a step whose
    worker died never reports back, so its run would wait forever."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        statuses = {
            str(r["runId"]): graphql(RUN_STATUS, id=r["runId"])["runOrError"]["status"]
            for r in graphql.backfill_runs(backfill_id)
        }
        going = [run for run, status in statuses.items() if status not in FINISHED]
        if not going and graphql.backfill_status(backfill_id) in FINISHED_BACKFILL:
            return
        assert time.monotonic() < deadline, f"runs still going: {statuses}"
        for run in going:
            if statuses[run] in ("STARTED", "QUEUED"):
                answer = graphql(TERMINATE, id=run)["terminateRun"]
                assert answer["__typename"] == "TerminateRunSuccess", answer
        for run, status in statuses.items():
            if status == "CANCELED":
                # A step lost with its worker never gives back its `raster` pool slot: free
                # it, as the UI's "free slots" does (or run_monitoring's
                # free_slots_after_run_end_seconds in dagster.yaml, later).
                assert graphql(FREE_SLOTS, id=run)["freeConcurrencySlotsForRun"] is True
        time.sleep(2.0)


def test_the_rerun_library_is_byte_identical_to_in_process(
    cluster: Cluster, interrupted: Interrupted, reference: Path
) -> None:
    got, want = library_files(cluster.deployment.library), library_files(reference)
    finals = {p for p in got if not is_scratch(p)}
    missing, extra = sorted(set(want) - finals), sorted(finals - set(want))
    assert not missing and not extra, f"missing: {missing[:5]}; not in-process: {extra[:5]}"
    differ = [path for path in want if got[path] != want[path]]
    assert not differ, f"{len(differ)} files differ from the in-process run: {differ[:5]}"
