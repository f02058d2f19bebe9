"""What a job file becomes in Dagster: ``<jid>_job`` and ``<jid>_schedule``.

A schedule tick re-reads the job file (a broken file skips the tick with its file:line
error), registers its tiles, and refreshes ``acquisitions`` for them over each task's window
(one run per tile and provider, windows merged), every run tagged with the tick
(``s2/tick``). Once they have all finished, ``new_acquisitions_sensor``
(:mod:`s2_assets.jobs.reconcile`) plans the job and launches what is missing.
"""

import re
from collections.abc import Collection
from datetime import UTC, date, datetime

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from s2_assets.jobs.jobfile import load_job
from s2_assets.jobs.model import JobFile
from s2_assets.jobs.options import JOB_TAG
from s2_assets.jobs.reconcile import TICK_TAG
from s2_assets.partitions import TILES

ACQUISITIONS = dg.AssetKey("acquisitions")


def tick_windows(job: JobFile, today: date) -> dict[tuple[str, str], tuple[date, date]]:
    """Per (tile, provider): the union of the enabled tasks' windows on ``today``."""
    windows: dict[tuple[str, str], tuple[date, date]] = {}
    for task in job.enabled_tasks:
        start, end = task.window(today)
        end = min(end, today)
        key = (task.tile, task.provider)
        if key in windows:
            start, end = min(start, windows[key][0]), max(end, windows[key][1])
        windows[key] = (start, end)
    return windows


def build_job_schedule(
    job: JobFile,
    acquisitions: dg.AssetsDefinition,
    timezone: str,
    providers: Collection[str] | None = None,
) -> tuple[UnresolvedAssetJobDefinition, dg.ScheduleDefinition]:
    """``<jid>_job`` (refresh the job's catalogues) and ``<jid>_schedule`` on its ``timing``."""
    jid = job.jid
    asset_job = dg.define_asset_job(
        f"{jid}_job",
        selection=dg.AssetSelection.assets(acquisitions),
        partitions_def=TILES,
        tags={JOB_TAG: jid},
        description=f"sen2chain job {jid}: discover new products of {', '.join(job.tiles)}",
    )

    @dg.schedule(
        name=f"{jid}_schedule",
        cron_schedule=job.settings.timing,
        job=asset_job,
        execution_timezone=timezone,
        description=f"{job.path} timing '{job.settings.timing}'. Running = sen2chain cron_enable.",
    )
    def job_schedule(context: dg.ScheduleEvaluationContext) -> dg.SkipReason | list[dg.RunRequest]:
        try:
            # The file may have changed since the code loaded.
            current = load_job(job.path, providers=providers)
        except Exception as exc:  # a broken file skips this tick, visibly, and nothing else
            return dg.SkipReason(f"job file unreadable: {exc}")
        scheduled = context.scheduled_execution_time or datetime.now(UTC)
        if not current.enabled_tasks:
            return dg.SkipReason(f"{job.path}: no enabled task row")
        return discovery_requests(current, context.instance, scheduled.date(), str(scheduled))

    return asset_job, job_schedule


def discovery_config(start: date, end: date, provider: str) -> dict[str, object]:
    """Run config of one ``acquisitions`` refresh."""
    window = {"start": start.isoformat(), "end": end.isoformat(), "provider": provider}
    return {"ops": {"acquisitions": {"config": window}}}


def discovery_requests(
    job: JobFile, instance: dg.DagsterInstance, today: date, tick: str
) -> list[dg.RunRequest]:
    """Register the job's tiles and request one ``acquisitions`` run per (tile, provider)."""
    known = set(instance.get_dynamic_partitions(TILES.name or "tiles"))
    new_tiles = [tile for tile in job.tiles if tile not in known]
    if new_tiles:
        instance.add_dynamic_partitions(TILES.name or "tiles", new_tiles)
    return [
        dg.RunRequest(
            run_key=f"{job.jid}:{tile}:{provider}:{tick}",
            partition_key=tile,
            run_config=discovery_config(start, end, provider),
            tags={JOB_TAG: job.jid, TICK_TAG: tick},
        )
        for (tile, provider), (start, end) in sorted(tick_windows(job, today).items())
    ]


def build_broken_job_schedule(path_text: str, jid: str, error: str) -> dg.ScheduleDefinition:
    """A broken job file still shows in the UI: a schedule whose every tick says why it skips."""
    jid = re.sub(r"[^A-Za-z0-9_]", "_", jid)  # the file name may not make a valid Dagster name
    asset_job = dg.define_asset_job(f"{jid}_job", selection=dg.AssetSelection.assets(ACQUISITIONS))

    @dg.schedule(
        name=f"{jid}_schedule",
        cron_schedule="0 0 * * *",
        job=asset_job,
        description=f"BROKEN job file {path_text}: {error}",
    )
    def broken_schedule(context: dg.ScheduleEvaluationContext) -> dg.SkipReason:
        return dg.SkipReason(f"job file {path_text} is broken: {error}")

    return broken_schedule
