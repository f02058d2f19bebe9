"""What an extraction job file becomes in Dagster: ``<jid>_extraction_job`` and
``<jid>_extraction_schedule`` on its ``timing``, as processing job files become theirs.

Each tick reads the file again, finds per enabled row the library's tiles its polygons
touch (:mod:`s2_assets.jobs.extraction_plan`), registers those not yet in the ``tiles``
dynamic partitions, and requests one ``timeseries`` run per row, mask and tile with the
row's window (resolved on the tick's day), cloud limit, indices, ``compiled_data``,
``smooth_data`` and ``force_extraction``. A broken file still shows a schedule, whose every
tick skips saying why (file:line).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from s2_assets.errors import S2AssetsError
from s2_assets.jobs.extraction_file import (
    ExtractionJob,
    load_extraction_job,
    load_extraction_jobs,
)
from s2_assets.jobs.extraction_plan import plan
from s2_assets.jobs.jobfile import jid_from_path
from s2_assets.library.tree import Library
from s2_assets.partitions import TILES

EXTRACTION_TAG = "s2/extraction"


def extraction_names(jid: str) -> tuple[str, str]:
    """``<jid>_extraction_job`` and ``<jid>_extraction_schedule``."""
    return f"{jid}_extraction_job", f"{jid}_extraction_schedule"


def extraction_requests(
    job: ExtractionJob, library: Library, instance: dg.DagsterInstance, when: datetime
) -> list[dg.RunRequest]:
    """Register the touched tiles and request one ``timeseries`` run per row, mask and tile."""
    runs = plan(job, library, when.date())
    known = set(instance.get_dynamic_partitions(TILES.name or "tiles"))
    new_tiles = sorted({run.tile for run in runs} - known)
    if new_tiles:
        instance.add_dynamic_partitions(TILES.name or "tiles", new_tiles)
    return [
        dg.RunRequest(
            run_key=f"{job.jid}:{run.key}:{when.isoformat()}",
            partition_key=run.tile,
            run_config={"ops": {"timeseries": {"config": run.config}}},
            tags={EXTRACTION_TAG: job.jid},
        )
        for run in runs
    ]


def build_extraction_schedule(
    job: ExtractionJob, timeseries: dg.AssetsDefinition, root: Path, timezone: str
) -> tuple[UnresolvedAssetJobDefinition, dg.ScheduleDefinition]:
    """The job (``timeseries`` by tile) and its schedule on the file's ``timing``."""
    job_name, schedule_name = extraction_names(job.jid)
    asset_job = dg.define_asset_job(
        job_name,
        selection=dg.AssetSelection.assets(timeseries),
        partitions_def=TILES,
        tags={EXTRACTION_TAG: job.jid},
        description=f"sen2chain extraction job {job.jid}: time series of {job.path.name}",
    )

    @dg.schedule(
        name=schedule_name,
        cron_schedule=job.settings.timing,
        job=asset_job,
        execution_timezone=timezone,
        description=f"{job.path} timing '{job.settings.timing}'",
    )
    def extraction_schedule(
        context: dg.ScheduleEvaluationContext,
    ) -> dg.SkipReason | list[dg.RunRequest]:
        try:
            current = load_extraction_job(job.path, root=root)  # the file may have changed
            when = context.scheduled_execution_time or datetime.now(UTC)
            requests = extraction_requests(current, Library(root), context.instance, when)
        except S2AssetsError as exc:  # a broken file or vector skips this tick, visibly
            return dg.SkipReason(f"extraction job {job.jid}: {exc}")
        if not requests:
            return dg.SkipReason(
                f"extraction job {job.jid}: no tile of the library with the rows' indices "
                "intersects their polygons yet"
            )
        return requests

    return asset_job, extraction_schedule


def build_broken_extraction_schedule(
    jid: str, error: str, *, clashes: bool = False
) -> dg.ScheduleDefinition:
    """A broken extraction file still shows in the UI: every tick skips saying why
    (``clashes``: its job name is taken, so its placeholder job gets another)."""
    jid = re.sub(r"[^A-Za-z0-9_]", "_", jid)
    job_name, schedule_name = extraction_names(jid)
    if clashes:
        job_name, schedule_name = f"{jid}_extraction_broken_job", f"{jid}_extraction_broken"
    asset_job = dg.define_asset_job(job_name, selection=dg.AssetSelection.assets("timeseries"))

    @dg.schedule(
        name=schedule_name,
        cron_schedule="0 0 * * *",
        job=asset_job,
        description=f"BROKEN extraction job file: {error}",
    )
    def broken_schedule(context: dg.ScheduleEvaluationContext) -> dg.SkipReason:
        return dg.SkipReason(f"extraction job file is broken: {error}")

    return broken_schedule


def build_extraction_automation(
    root: Path, timeseries: dg.AssetsDefinition, timezone: str, *, taken: Collection[str] = ()
) -> tuple[list[UnresolvedAssetJobDefinition], list[dg.ScheduleDefinition]]:
    """Jobs and schedules of every extraction job file under ``<root>/config/jobs_extr``.

    ``taken`` are job names already defined (processing jobs): an extraction job whose names
    would clash is shown as broken rather than breaking the code location.
    """
    jobs, errors = load_extraction_jobs(root)
    asset_jobs: list[UnresolvedAssetJobDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    for job in jobs:
        if extraction_names(job.jid)[0] in taken:
            message = f"{job.path}: job name {extraction_names(job.jid)[0]} is taken; rename it"
            schedules.append(build_broken_extraction_schedule(job.jid, message, clashes=True))
            continue
        asset_job, schedule = build_extraction_schedule(job, timeseries, root, timezone)
        asset_jobs.append(asset_job)
        schedules.append(schedule)
    for error in errors:
        path = Path(str(getattr(error, "path", "job file")))
        schedules.append(build_broken_extraction_schedule(jid_from_path(path), str(error)))
    return asset_jobs, schedules
