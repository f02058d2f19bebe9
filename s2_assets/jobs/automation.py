"""What a job file becomes in Dagster: ``<jid>_job``, ``<jid>_schedule``, and the sensor that
turns newly catalogued products into ONE backfill.

A schedule tick refreshes ``acquisitions`` for the job's tiles over each task's window (one
run per tile and provider, windows merged). ``new_acquisitions_sensor`` reads the
``new_partitions`` that each ``acquisitions`` materialization records, keeps the (tile, date)
pairs that have a product the governing task accepts, and launches one backfill of the
assets those tasks ask for. Per tile the backfill covers the span from the first to the last
new day, so ``BackfillPolicy.single_run`` makes it one ranged run per tile.
"""

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from s2_assets.jobs.backfill import backfill_request
from s2_assets.jobs.jobfile import load_job, load_jobs
from s2_assets.jobs.model import JobFile, task_chunks
from s2_assets.jobs.options import JOB_TAG, TASK_TAG, options_for
from s2_assets.library import acquisitions as catalogue
from s2_assets.library.tree import Library
from s2_assets.partitions import TILES, TileDate
from s2_assets.providers.base import ProductRecord
from s2_assets.resources.library import LibraryResource

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
    job: JobFile, acquisitions: dg.AssetsDefinition, timezone: str
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
            current = load_job(job.path)  # the file may have changed since the code loaded
        except Exception as exc:  # a broken file skips this tick, visibly, and nothing else
            return dg.SkipReason(f"job file unreadable: {exc}")
        scheduled = context.scheduled_execution_time or datetime.now(UTC)
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
            tags={JOB_TAG: job.jid},
        )
        for (tile, provider), (start, end) in sorted(tick_windows(job, today).items())
    ]


def plan_backfill(
    new_keys: Sequence[TileDate],
    records_by_tile: dict[str, list[ProductRecord]],
    jobs: Sequence[JobFile],
    *,
    job: str | None,
    today: date,
    available: set[str],
) -> dict[str, set[TileDate]]:
    """Which assets each new (tile, date) needs, then each tile's span filled in.

    A (tile, date) is kept only when the governing task accepts one of its products at a
    level it takes; assets not in ``available`` (not deployed) are left out.
    """
    wanted: dict[str, set[TileDate]] = {}
    for key in new_keys:
        options = options_for(jobs, key.tile, key.date, today=today, job=job)
        rows = [r for r in records_by_tile.get(key.tile, []) if r.date == key.date]
        if not any(options.select([r for r in rows if r.level == lvl]) for lvl in options.levels):
            continue
        for name in options.asset_names:
            if name in available:
                wanted.setdefault(name, set()).add(key)
    return {name: fill_spans(keys) for name, keys in wanted.items()}


def chunk_keys(
    keys: Sequence[TileDate], jobs: Sequence[JobFile], *, job: str | None, today: date
) -> list[tuple[tuple[int, ...], list[TileDate]]]:
    """Group new keys as the job's ``process_by_line`` says: with k > 0 the task rows are
    split into chunks as sen2chain split them, and each chunk gets its own backfill.

    Returns (governing task indices, keys) per chunk; tiles no task governs share one group.
    """
    job_file = next((j for j in jobs if j.jid == job), None)
    chunk_of: dict[int, int] = {}
    if job_file is not None:
        chunks = task_chunks(job_file.enabled_tasks, job_file.settings.process_by_line)
        chunk_of = {task.index: n for n, chunk in enumerate(chunks) for task in chunk}
    groups: dict[int, tuple[set[int], list[TileDate]]] = {}
    for key in keys:
        task = options_for(jobs, key.tile, key.date, today=today, job=job).task
        tasks, members = groups.setdefault(
            chunk_of.get(task, -1) if task is not None else -1, (set(), [])
        )
        if task is not None:
            tasks.add(task)
        members.append(key)
    return [(tuple(sorted(tasks)), members) for _, (tasks, members) in sorted(groups.items())]


def fill_spans(keys: set[TileDate]) -> set[TileDate]:
    """Every day between each tile's first and last key: one contiguous range per tile."""
    filled: set[TileDate] = set()
    for tile in {k.tile for k in keys}:
        days = sorted(k.date for k in keys if k.tile == tile)
        filled.update(
            TileDate(tile, days[0] + timedelta(n)) for n in range((days[-1] - days[0]).days + 1)
        )
    return filled


@dataclass(frozen=True)
class BackfillPlan:
    """One backfill to launch: its tags and the partitions of each asset."""

    tags: dict[str, str]
    partitions: dict[str, set[TileDate]]

    def describe(self) -> str:
        return ", ".join(f"{n} x {len(ks)}" for n, ks in sorted(self.partitions.items()))


def new_partitions_since(
    instance: dg.DagsterInstance, after: int
) -> tuple[dict[str | None, list[TileDate]], int | None]:
    """New (tile, date) keys recorded by ``acquisitions`` after event ``after``, by job tag,
    and the last event id read (None when there was nothing)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ACQUISITIONS, after_storage_id=after),
        limit=1000,
        ascending=True,
    ).records
    new_by_job: dict[str | None, list[TileDate]] = {}
    for record in records:
        materialization = record.asset_materialization
        if materialization is None:
            continue
        entry = materialization.metadata.get("new_partitions")
        keys = json.loads(json.dumps(entry.value)) if entry is not None else []
        run = instance.get_run_by_id(record.run_id)
        job = run.tags.get(JOB_TAG) if run else None
        new_by_job.setdefault(job, []).extend(TileDate.parse(k) for k in keys)
    return new_by_job, (max(r.storage_id for r in records) if records else None)


def plan_backfills(
    new_by_job: dict[str | None, list[TileDate]],
    lib: Library,
    jobs: Sequence[JobFile],
    *,
    today: date,
    available: set[str],
    staged_providers: frozenset[str] = frozenset(),
) -> list[BackfillPlan]:
    """One backfill per job (per ``process_by_line`` chunk) covering what its tasks ask for."""
    plans = []
    for job, keys in sorted(new_by_job.items(), key=lambda item: item[0] or ""):
        tables = {
            t: [
                r
                for r in catalogue.read_table(lib.acquisitions_path(t))
                if r.provider not in staged_providers
            ]
            for t in {k.tile for k in keys}
        }
        for tasks, group in chunk_keys(keys, jobs, job=job, today=today):
            plan = plan_backfill(group, tables, jobs, job=job, today=today, available=available)
            if not plan:
                continue
            tags = {JOB_TAG: job} if job else {}
            if tasks:
                tags[TASK_TAG] = ",".join(str(t) for t in tasks)
            plans.append(BackfillPlan(tags, plan))
    return plans


def asset_names(product_assets: Sequence[dg.AssetsDefinition]) -> set[str]:
    return {key.to_user_string() for a in product_assets for key in a.keys}


def build_new_acquisitions_sensor(
    product_assets: Sequence[dg.AssetsDefinition], staged_providers: frozenset[str] = frozenset()
) -> dg.SensorDefinition:
    """``new_acquisitions_sensor``: new catalogue rows -> one backfill per job per tick.

    Products of ``staged_providers`` (EODC with Chiller) are left to ``staging_sensor``,
    which launches their backfill once they are on disk.
    """
    available = asset_names(product_assets)

    @dg.sensor(
        name="new_acquisitions_sensor",
        asset_selection=dg.AssetSelection.assets(*product_assets),
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches one backfill of the new (tile, date) partitions each "
        "acquisitions refresh found, for the assets their job tasks ask for.",
    )
    def new_acquisitions_sensor(
        context: dg.SensorEvaluationContext, library: LibraryResource
    ) -> dg.SensorResult | dg.SkipReason:
        """Read new catalogue rows since the cursor; launch one backfill per job."""
        new_by_job, last = new_partitions_since(context.instance, int(context.cursor or 0))
        if last is None:
            return dg.SkipReason("no new acquisitions materializations")
        lib = library.library()
        jobs, errors = load_jobs(lib.jobs_dir)
        for error in errors:
            context.log.warning(str(error))
        repository = context.repository_def
        assert repository is not None, "sensor evaluated without its definitions"
        plans = plan_backfills(
            new_by_job,
            lib,
            jobs,
            today=datetime.now(UTC).date(),
            available=available,
            staged_providers=staged_providers,
        )
        requests = []
        for plan in plans:
            partitions = {dg.AssetKey(n): {str(k) for k in ks} for n, ks in plan.partitions.items()}
            requests.append(backfill_request(partitions, repository.asset_graph, plan.tags))
            context.log.info(f"backfill {plan.tags}: {plan.describe()}")
        if not requests:
            # Advance the cursor all the same: these rows have been looked at.
            return dg.SensorResult(
                skip_reason="new products found, but none that a task accepts", cursor=str(last)
            )
        return dg.SensorResult(run_requests=requests, cursor=str(last))

    return new_acquisitions_sensor


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
