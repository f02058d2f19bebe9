"""Drive what the daemon would: schedule ticks, sensor evaluations, and backfills executed as
ranged runs per tile (what BackfillPolicy.single_run makes of them)."""

import itertools
from datetime import UTC, datetime, timedelta

import dagster as dg

from s2_assets.jobs.backfill import requested_partitions
from s2_assets.jobs.run_now import run_ranges
from s2_assets.partitions import TileDate

_TICKS = itertools.count()


def tick(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    jid: str = "reunion",
    when: datetime = datetime(2022, 2, 7, 2, 30, tzinfo=UTC),
) -> list[dg.RunRequest]:
    """One schedule tick; each call is a distinct tick (a second later than the last)."""
    when = when + timedelta(seconds=next(_TICKS))
    schedule = defs.get_schedule_def(f"{jid}_schedule")
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=when,
        repository_def=defs.get_repository_def(),
    )
    return list(schedule.evaluate_tick(context).run_requests or [])


def run_requests(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    requests: list[dg.RunRequest],
    jid: str = "reunion",
) -> None:
    job = defs.resolve_job_def(f"{jid}_job")
    for request in requests:
        result = job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            run_config=request.run_config,
            tags=request.tags,
        )
        assert result.success


def sense(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None):
    sensor = defs.get_sensor_def("new_acquisitions_sensor")
    with dg.build_sensor_context(
        instance=instance, definitions=defs, cursor=cursor, resources=defs.resources
    ) as context:
        return sensor(context)


def execute_backfill(defs: dg.Definitions, instance: dg.DagsterInstance, request) -> None:
    """What the backfill daemon does with BackfillPolicy.single_run: one ranged run per tile."""
    covered = requested_partitions(request)
    keys = {TileDate.parse(k) for parts in covered.values() for k in parts}
    job = defs.resolve_implicit_global_asset_job_def()
    run_ranges(job, instance, sorted(k.to_user_string() for k in covered), keys, request.tags)
