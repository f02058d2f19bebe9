"""Benchmark the orchestration side of s2_assets at scale, on a SQLite and a Postgres instance.

    python -m benchmarks.orchestration                      # both storages, full sizes
    python -m benchmarks.orchestration --storage sqlite --quick

Each storage gets a fresh instance (SQLite: the repo's dagster.yaml; Postgres: a throwaway
server with deploy/dagster.postgres.yaml) whose run queue never launches, so what is timed
is Dagster's own bookkeeping, not product work:

- ``add_tiles``: registering N tiles (one ``add_dynamic_partitions`` call, as the sensor does);
- ``backfill_plan``/``backfill_store``: a backfill of T tiles x Y years of l1c, l2a,
  cloudmask and ndvi: the asset-graph subset ``new_acquisitions_sensor`` builds, then
  ``add_backfill``;
- ``backfill_launch``: one backfill-daemon iteration, which creates one ranged run per tile.
  Creating a run stores one "materialization planned" event per asset and day, one at a
  time, so this is measured on sizes a small machine affords (1 tile x 1 year, 10 tiles x
  31 days) and reported per asset-partition;
- ``runs``: in-process runs of ``l1c``, one partition each (no product: orchestration only);
- ``ranged_run``: one run of ``l1c`` over D days of a tile, per partition, with Dagster's
  default one-event-at-a-time writes and with ``DAGSTER_EVENT_BATCH_SIZE`` batching;
- ``history_share``: what a 10-year backfill of one tile with every product asset (l1c, l2a,
  cloudmask, the 12 indices) costs in Dagster bookkeeping against its product work. One
  ranged run over D days of an empty library (every partition an empty day: bookkeeping
  only, run creation included) gives the cost per asset-partition, with Dagster's defaults and
  with the settings ``deploy/services.sh`` exports (one "planned" event per asset and run,
  events written in batches). The share projects that onto 3,652 days x 15 assets against
  one product every ``--revisit-days`` at ``--product-seconds`` each (the measured mask + 12
  indices time of ``benchmarks.tile`` on a full 10980 px tile);
- ``plan``: planning one job of T tiles x Y years (:mod:`benchmarks.plan_history`) against a
  library holding that history and an instance holding a backfill of it in progress, in two
  states: ``present`` (every output on disk) and ``in_progress`` (the later half of the
  outputs not yet made: each looked up in the backfill); the median of ``--rounds`` plans,
  with CPU seconds; target under 10 s for 100 tiles x 10 years;
- ``graphql``: the UI's own ``PartitionHealthQuery`` for ``ndvi`` through a real webserver,
  for 10, 50 and 100 tiles x 10 years all materialized (as ranged runs leave them): ``cold``
  (status cache wiped) and ``warm``. The history is written straight into the event log
  with the rows a run writes; through runs it would take hours (see ``ranged_run``).

Prints one JSON line per measure: ``{"storage", "measure", <sizes>, "seconds", <rate>}``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import requests
import yaml

REPO = Path(__file__).resolve().parent.parent
PRODUCT_ASSETS = ("l1c", "l2a", "cloudmask", "ndvi")
# Fixed dates so the measures do not move with the calendar; partitions start 10 years back.
LAST_DAY = date(2025, 12, 31)
DATE_START = (LAST_DAY - timedelta(days=3652)).isoformat()
_BANDS = "CDEFGHJKLMNPQRSTUVWX"
_SQUARES = "ABCDEFGHJKLMNPQRSTUVWXYZ"
PARTITION_HEALTH = (Path(__file__).with_name("partition_health.graphql")).read_text()
log = logging.getLogger("benchmarks.orchestration")
RESULTS = sys.stdout  # main() keeps stdout for the JSON lines alone
# Runs log to the console at DEBUG by default; the JSON lines are what matters here.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def tile_ids(count: int, *, skip: int = 0) -> list[str]:
    """``count`` distinct valid MGRS tile ids (zone, latitude band, 100 km square)."""
    every = (
        f"{zone:02d}{band}{a}{b}"
        for band, zone, a, b in itertools.product(_BANDS, range(1, 61), _SQUARES, _SQUARES)
    )
    return list(itertools.islice(every, skip, skip + count))


def emit(storage: str, measure: str, seconds: float, **fields: Any) -> None:
    """One JSON line; ``load`` is the 1-minute load average (the machine may be shared)."""
    line = {"storage": storage, "measure": measure, **fields, "seconds": round(seconds, 3),
            "load": round(os.getloadavg()[0], 2)}  # fmt: skip
    print(json.dumps(line), file=RESULTS, flush=True)


@contextmanager
def timed() -> Iterator[list[float]]:
    box = [0.0]
    start = time.perf_counter()
    yield box
    box[0] = time.perf_counter() - start


@contextmanager
def opened_instance(storage: str, home: Path) -> Iterator[dg.DagsterInstance]:
    """A fresh instance of ``storage`` in ``home``; the run queue never launches (limit 0)."""
    source = REPO / ("dagster.yaml" if storage == "sqlite" else "deploy/dagster.postgres.yaml")
    config = yaml.safe_load(source.read_text())
    config.setdefault("concurrency", {}).setdefault("runs", {})["max_concurrent_runs"] = 0
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    server = None
    if storage == "postgres":
        from s2_assets_tests.e2e.postgres import start_postgres

        server = start_postgres()
        os.environ.update(server.environment())
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance
    finally:
        if server is not None:
            server.stop()


def definitions(library: Path) -> dg.Definitions:
    from s2_assets.definitions import build_definitions
    from s2_assets.settings import Settings

    return build_definitions(Settings(data_home=library, date_start=DATE_START))


def days(first: date, count: int) -> list[str]:
    return [(first + timedelta(n)).isoformat() for n in range(count)]


def measure_add_tiles(storage: str, instance: dg.DagsterInstance, sizes: list[int]) -> None:
    registered = 0
    for size in sizes:
        tiles = tile_ids(size, skip=registered)
        with timed() as took:
            instance.add_dynamic_partitions("tiles", tiles)
        registered += size
        emit(storage, "add_tiles", took[0], tiles=size, tiles_per_s=round(size / took[0]))


def store_backfill(
    instance: dg.DagsterInstance, defs: dg.Definitions, keys: set[str], backfill_id: str
) -> tuple[float, float]:
    """Plan (the subset the sensor builds) and store one backfill of ``keys`` x the product
    assets; seconds for each."""
    from dagster._core.execution.backfill import PartitionBackfill

    from s2_assets.jobs.backfill import backfill_request

    graph = defs.resolve_asset_graph()
    with timed() as plan:
        request = backfill_request({dg.AssetKey(a): keys for a in PRODUCT_ASSETS}, graph, {})
    subset = request.asset_graph_subset
    assert subset is not None
    with timed() as store:
        instance.add_backfill(
            PartitionBackfill.from_asset_graph_subset(
                backfill_id=backfill_id,
                backfill_timestamp=time.time(),
                tags={},
                dynamic_partitions_store=instance,
                asset_graph_subset=subset,
                title=None,
                description=None,
                run_config=None,
            )
        )
    return plan[0], store[0]


def drop_backfill(instance: dg.DagsterInstance, backfill_id: str) -> list[Any]:
    """Cancel the backfill and delete its (queued, never launched) runs; its run records."""
    from dagster._core.execution.backfill import BulkActionStatus

    runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    backfill = instance.get_backfill(backfill_id)
    assert backfill is not None
    instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELED))
    for record in runs:
        instance.delete_run(record.dagster_run.run_id)
    return list(runs)


def measure_backfill_plan(
    storage: str, instance: dg.DagsterInstance, defs: dg.Definitions, tiles: int, years: int
) -> None:
    span = days(LAST_DAY - timedelta(days=365 * years - 1), 365 * years)
    keys = {f"{day}|{tile}" for tile in tile_ids(tiles) for day in span}
    plan, store = store_backfill(instance, defs, keys, f"plan{tiles}x{years}")
    drop_backfill(instance, f"plan{tiles}x{years}")
    size = {"tiles": tiles, "years": years, "asset_partitions": len(keys) * len(PRODUCT_ASSETS)}
    emit(storage, "backfill_plan", plan, **size)
    emit(storage, "backfill_store", store, **size)


def measure_backfill_launch(
    storage: str, instance: dg.DagsterInstance, defs: dg.Definitions, tiles: int, length: int
) -> None:
    """One backfill-daemon iteration: it creates one ranged run per tile, and creating a run
    stores one "materialization planned" event per asset and day, one event at a time."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.backfill import execute_backfill_iteration

    span = days(LAST_DAY - timedelta(days=length - 1), length)
    keys = {f"{day}|{tile}" for tile in tile_ids(tiles) for day in span}
    backfill_id = f"launch{tiles}x{length}"
    store_backfill(instance, defs, keys, backfill_id)
    target = ModuleTarget(
        module_name="s2_assets.definitions",
        attribute=None,
        working_directory=str(REPO),
        location_name="s2_assets",
    )
    with WorkspaceProcessContext(instance, target) as workspace:
        started = time.perf_counter()  # the code server is up: time the iteration alone
        list(execute_backfill_iteration(workspace, log))
        seconds = time.perf_counter() - started
    runs = drop_backfill(instance, backfill_id)
    partitions = len(keys) * len(PRODUCT_ASSETS)
    emit(storage, "backfill_launch", seconds, tiles=tiles, days=length, runs=len(runs),
         asset_partitions=partitions, ms_per_asset_partition=round(1000 * seconds / partitions, 1))  # fmt: skip


def measure_runs(
    storage: str, instance: dg.DagsterInstance, defs: dg.Definitions, count: int
) -> None:
    job = defs.resolve_implicit_global_asset_job_def()
    tile = tile_ids(1)[0]
    keys = [f"{day}|{tile}" for day in days(LAST_DAY - timedelta(days=count - 1), count)]
    with timed() as took:
        for key in keys:
            result = job.execute_in_process(
                instance=instance,
                partition_key=key,
                asset_selection=[dg.AssetKey("l1c")],
                run_config=QUIET,
            )
            assert result.success
    emit(storage, "runs", took[0], runs=count, runs_per_s=round(count / took[0], 2))


def measure_ranged_run(
    storage: str, instance: dg.DagsterInstance, defs: dg.Definitions, length: int
) -> None:
    job = defs.resolve_implicit_global_asset_job_def()
    for tile, batch in zip(tile_ids(2, skip=1), (0, 1000), strict=True):
        span = days(LAST_DAY - timedelta(days=length - 1), length)
        os.environ["DAGSTER_EVENT_BATCH_SIZE"] = str(batch)
        try:
            with timed() as took:
                result = job.execute_in_process(
                    instance=instance,
                    asset_selection=[dg.AssetKey("l1c")],
                    run_config=QUIET,
                    tags={
                        "dagster/asset_partition_range_start": f"{span[0]}|{tile}",
                        "dagster/asset_partition_range_end": f"{span[-1]}|{tile}",
                    },
                )
        finally:
            os.environ.pop("DAGSTER_EVENT_BATCH_SIZE")
        assert result.success
        emit(storage, "ranged_run", took[0], partitions=length, event_batch_size=batch,
             partitions_per_s=round(length / took[0], 1))  # fmt: skip


# Cost of one product's raster work (one CM004 mask + 12 indices raw and masked, full tile):
# `python -m benchmarks.tile --size 10980` on this 2-core machine, 123.1 s wall (README).
PRODUCT_SECONDS = 123.1
# Sentinel-2A and 2B together revisit a tile every 5 days.
REVISIT_DAYS = 5
HISTORY_DAYS = 3652
# Dagster's switches for cheaper bookkeeping (read from the environment of the daemon, which
# creates runs, and of the runs): one "planned" event per asset for a ranged run instead of
# one per partition, and events written in batches of up to 1000.
LEAN_BOOKKEEPING = {
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
}


def measure_history_share(
    storage: str,
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    length: int,
    product_seconds: float,
    revisit_days: int,
) -> None:
    from s2_assets.specs import INDEX_NAMES

    assets = ["l1c", "l2a", "cloudmask", *(name.lower() for name in INDEX_NAMES)]
    job = defs.resolve_implicit_global_asset_job_def()
    span = days(LAST_DAY - timedelta(days=length - 1), length)
    products = HISTORY_DAYS // revisit_days
    product_work = products * product_seconds
    for tile, settings in zip(tile_ids(2, skip=5), ({}, LEAN_BOOKKEEPING), strict=True):
        instance.add_dynamic_partitions("tiles", [tile])
        os.environ.update(settings)
        try:
            cpu = time.process_time()
            with timed() as took:
                result = job.execute_in_process(
                    instance=instance,
                    asset_selection=[dg.AssetKey(a) for a in assets],
                    run_config=QUIET,
                    tags={
                        "dagster/asset_partition_range_start": f"{span[0]}|{tile}",
                        "dagster/asset_partition_range_end": f"{span[-1]}|{tile}",
                    },
                )
            cpu = time.process_time() - cpu
        finally:
            for key in settings:
                os.environ.pop(key)
        assert result.success
        per_partition = took[0] / (length * len(assets))
        bookkeeping = per_partition * HISTORY_DAYS * len(assets)
        emit(storage, "history_share", took[0], days=length, assets=len(assets),
             settings="lean" if settings else "default",
             ms_per_asset_partition=round(1000 * per_partition, 1),
             cpu_ms_per_asset_partition=round(1000 * cpu / (length * len(assets)), 1),
             history_bookkeeping_s=round(bookkeeping), history_products=products,
             history_product_work_s=round(product_work),
             share_pct=round(100 * bookkeeping / product_work, 1))  # fmt: skip


def seed_materializations(instance: dg.DagsterInstance, asset: str, keys: list[str]) -> None:
    """Write one materialization per key, in chunks, with the rows a run would write."""
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.events.log import EventLogEntry
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID
    from dagster._core.storage.event_log import SqlEventLogStorageTable
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    storage = instance.event_log_storage
    for start in range(0, len(keys), 10_000):
        events = [
            EventLogEntry(
                user_message="",
                level=logging.DEBUG,
                job_name=RUNLESS_JOB_NAME,
                run_id=RUNLESS_RUN_ID,
                error_info=None,
                timestamp=time.time(),
                step_key=None,
                dagster_event=DagsterEvent(
                    event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                    job_name=RUNLESS_JOB_NAME,
                    event_specific_data=StepMaterializationData(
                        dg.AssetMaterialization(asset, partition=key)
                    ),
                ),
            )
            for key in keys[start : start + 10_000]
        ]
        if not isinstance(storage, SqliteEventLogStorage):
            storage.store_event_batch(events)  # Postgres writes a batch in one statement
            continue
        # SQLite has no batch write: the same two copies store_event makes, in one statement.
        statement = storage.prepare_insert_event_batch(events)
        with storage.run_connection(RUNLESS_RUN_ID) as conn:
            conn.execute(statement)
        with storage.index_transaction() as conn:
            ids = [
                row[0] for row in conn.execute(statement.returning(SqlEventLogStorageTable.c.id))
            ]
            storage._store_asset_event_tags(conn, events, ids)
            storage._store_asset_event(conn, events[-1], ids[-1])


@contextmanager
def webserver(env: dict[str, str]) -> Iterator[str]:
    """``dagster-webserver`` on a free loopback port; stopped by pid (SIGINT, then its group)."""
    from s2_assets_tests.e2e.postgres import free_port

    port = free_port()
    argv = [str(Path(sys.executable).with_name("dagster-webserver")), "-w",
            str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    process = subprocess.Popen(
        argv, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("dagster-webserver did not come up") from None
                time.sleep(1)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # its code server, if still there


def partition_health(url: str) -> tuple[float, int]:
    """Seconds and response bytes of the UI's partition query for ``ndvi``."""
    with timed() as took:
        reply = requests.post(
            f"{url}/graphql",
            json={"query": PARTITION_HEALTH, "variables": {"assetKey": {"path": ["ndvi"]}}},
            timeout=600,
        )
    reply.raise_for_status()
    assert "errors" not in reply.json(), reply.text[:500]
    return took[0], len(reply.content)


def measure_graphql(
    storage: str, instance: dg.DagsterInstance, env: dict[str, str], sizes: list[int]
) -> None:
    span = days(
        date.fromisoformat(DATE_START), (LAST_DAY - date.fromisoformat(DATE_START)).days + 1
    )
    seeded = 0
    with webserver(env) as url:
        for size in sizes:
            keys = [
                f"{day}|{tile}" for tile in tile_ids(size - seeded, skip=seeded) for day in span
            ]
            with timed() as wrote:
                seed_materializations(instance, "ndvi", keys)
            seeded = size
            partitions = size * len(span)
            emit(storage, "seed_history", wrote[0], tiles=size, events=len(keys))
            instance.wipe_asset_cached_status([dg.AssetKey("ndvi")])
            for state in ("cold", "warm"):
                seconds, size_bytes = partition_health(url)
                emit(storage, "graphql", seconds, state=state, tiles=size, years=10,
                     partitions=partitions, response_kb=size_bytes // 1024)  # fmt: skip


def measure_plan_row(
    storage: str, instance: dg.DagsterInstance, defs: dg.Definitions, library: Path, tiles: int,
    years: int, rounds: int = 1,
) -> None:  # fmt: skip
    from benchmarks.plan_history import (
        build_history,
        measure_plan,
        remove_later_half,
        store_history_backfill,
    )

    first = LAST_DAY - timedelta(days=365 * years - 1)
    from s2_assets.errors import TileIdError
    from s2_assets.products import validate_tile_id

    def valid(tile: str) -> bool:  # tile_ids() also yields rows W-Z, which job files refuse
        try:
            return bool(validate_tile_id(tile))
        except TileIdError:
            return False

    names = [t for t in tile_ids(tiles * 2, skip=5000) if valid(t)][:tiles]
    with timed() as built:
        acquisitions = build_history(library, names, first, LAST_DAY)
    emit(storage, "plan_history", built[0], tiles=tiles, years=years, acquisitions=acquisitions)
    store_history_backfill(instance, defs, names, first, LAST_DAY)
    figures = measure_plan(instance, defs, library, names, first, LAST_DAY, rounds)
    seconds = float(figures.pop("seconds"))  # type: ignore[arg-type]
    emit(storage, "plan", seconds, tiles=tiles, years=years, state="present", **figures)
    removed = remove_later_half(library, names, first, LAST_DAY)
    figures = measure_plan(instance, defs, library, names, first, LAST_DAY, rounds)
    seconds = float(figures.pop("seconds"))  # type: ignore[arg-type]
    emit(storage, "plan", seconds, tiles=tiles, years=years, state="in_progress",
         removed_acquisitions=removed, **figures)  # fmt: skip


def run(
    storage: str,
    quick: bool,
    only: str | None = None,
    *,
    product_seconds: float = PRODUCT_SECONDS,
    revisit_days: int = REVISIT_DAYS,
    rounds: int = 1,
) -> None:
    with tempfile.TemporaryDirectory(prefix=f"bench-{storage}-") as scratch:
        base = Path(scratch)
        library = base / "library"
        library.mkdir()
        os.environ.update({"S2_DATA_HOME": str(library), "S2_DATE_START": DATE_START})
        os.environ.pop("S2_EXECUTOR", None)
        with opened_instance(storage, base / "home") as instance:
            defs = definitions(library)
            if only == "history_share":
                measure_history_share(storage, instance, defs, 10 if quick else 60,
                                      product_seconds, revisit_days)  # fmt: skip
                return
            if only == "plan":
                measure_plan_row(
                    storage, instance, defs, library, *((10, 1) if quick else (100, 10)), rounds
                )
                return
            measure_add_tiles(storage, instance, [100] if quick else [100, 1000])
            for tiles, years in [(10, 1)] if quick else [(10, 1), (10, 10), (100, 1), (100, 10)]:
                measure_backfill_plan(storage, instance, defs, tiles, years)
            for tiles, length in [(2, 7)] if quick else [(1, 365), (10, 31)]:
                measure_backfill_launch(storage, instance, defs, tiles, length)
            measure_runs(storage, instance, defs, 5 if quick else 20)
            measure_ranged_run(storage, instance, defs, 60 if quick else 365)
            env = {k: v for k, v in os.environ.items() if k != "DAGSTER_EVENT_BATCH_SIZE"}
            measure_graphql(storage, instance, env, [10] if quick else [10, 50, 100])
            measure_history_share(storage, instance, defs, 10 if quick else 60,
                                  product_seconds, revisit_days)  # fmt: skip
            measure_plan_row(
                storage, instance, defs, library, *((10, 1) if quick else (100, 10)), rounds
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", nargs="+", choices=("sqlite", "postgres"),
                        default=["sqlite", "postgres"])  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="small sizes, to check it works")
    parser.add_argument("--only", choices=("history_share", "plan"), help="run this measure alone")
    parser.add_argument(
        "--product-seconds",
        type=float,
        default=PRODUCT_SECONDS,
        help="raster work per product (benchmarks.tile at full size)",
    )
    parser.add_argument("--revisit-days", type=int, default=REVISIT_DAYS,
                        help="days between two products of a tile")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3,
                        help="plan measure: plans per state; the median is reported")  # fmt: skip
    args = parser.parse_args()
    # Code servers started for the launch measure inherit stdout: send everything but the
    # JSON lines to stderr.
    global RESULTS
    RESULTS = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logging.basicConfig(level=logging.WARNING)
    for storage in args.storage:
        run(storage, args.quick, args.only, product_seconds=args.product_seconds,
            revisit_days=args.revisit_days, rounds=args.rounds)  # fmt: skip


if __name__ == "__main__":
    main()
