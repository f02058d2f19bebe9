"""Dagster's side of the planner: what queued or running work covers, and the sensor that
reconciles each job once its tick has refreshed the catalogue.

A job's schedule tick requests one ``acquisitions`` refresh per (tile, provider), all tagged
with the tick (``s2/tick``). ``new_acquisitions_sensor`` waits until every refresh run of a
job's newest tick has finished, then plans the job (:func:`s2_assets.jobs.planner.plan_job`)
and launches at most one backfill per ``process_by_line`` chunk, each asset only on the
partitions where something is missing; with nothing missing it says "N wanted outputs, all
present". A refresh started by hand (no tick tag) reconciles the jobs that list its tile.
Jobs are planned one after the other, each seeing what the previous one just launched, so
two jobs wanting the same file never launch it twice.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

from s2_assets.jobs.backfill import sensor_backfill
from s2_assets.jobs.jobfile import load_jobs
from s2_assets.jobs.model import JobFile
from s2_assets.jobs.planner import JobPlan, plan_job
from s2_assets.library.tree import Library
from s2_assets.partitions import TileDate
from s2_assets.resources.library import LibraryResource

TICK_TAG = "s2/tick"  # the schedule tick (or `s2-assets run`) a catalogue refresh belongs to
ACQUISITIONS = dg.AssetKey("acquisitions")
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


class Cover:
    """The partitions of one asset that work in progress covers: explicit keys (active runs,
    what was just launched) and the target subsets of backfills in progress, asked key by key
    (a history backfill holds hundreds of thousands of partitions: never listed)."""

    def __init__(self, asset: dg.AssetKey, subsets: Sequence[Any]) -> None:
        self.asset = asset
        self.keys: set[TileDate] = set()
        self.subsets = [s for s in subsets if asset in s]

    def __contains__(self, key: object) -> bool:
        if key in self.keys:
            return True
        pair = AssetKeyPartitionKey(self.asset, str(key))
        return any(pair in subset for subset in self.subsets)

    def __iter__(self) -> Iterator[TileDate]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys) + sum(
            len(s.partitions_subsets_by_asset_key.get(self.asset, ())) for s in self.subsets
        )

    def update(self, keys: Iterable[TileDate]) -> None:
        self.keys.update(keys)


class InProgress(dict[str, Cover]):
    """Per asset name, a :class:`Cover`; any asset name may be asked."""

    def __init__(self, subsets: Sequence[Any]) -> None:
        super().__init__()
        self.subsets = subsets

    def __missing__(self, asset: str) -> Cover:
        cover = self[asset] = Cover(dg.AssetKey.from_user_string(asset), self.subsets)
        return cover

    def get(self, asset: str, default: object = None) -> Cover:
        return self[asset]

    def setdefault(self, asset: str, default: object = None) -> Cover:
        return self[asset]


def in_progress(instance: dg.DagsterInstance) -> InProgress:
    """Per asset, the (tile, date) partitions a queued or running run or a backfill still in
    progress covers."""
    backfills = instance.get_backfills(
        filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED])
    )
    subsets = [
        b.asset_backfill_data.target_subset for b in backfills if b.asset_backfill_data is not None
    ]
    covered = InProgress(subsets)
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=_ACTIVE)):
        keys = run_keys(run.tags)
        for asset in run.asset_selection or ():
            if keys:
                covered[asset.to_user_string()].update(keys)
    return covered


def run_keys(tags: Mapping[str, str]) -> list[TileDate]:
    """The (tile, date) partitions a run's tags say it covers (one key or a ranged run)."""
    try:
        if RANGE_START in tags and RANGE_END in tags:
            first, last = TileDate.parse(tags[RANGE_START]), TileDate.parse(tags[RANGE_END])
            if first.tile != last.tile:
                return []
            days = (last.date - first.date).days
            return [TileDate(first.tile, first.date + timedelta(days=n)) for n in range(days + 1)]
        partition = tags.get("dagster/partition")
        return [TileDate.parse(partition)] if partition and "|" in partition else []
    except ValueError:
        return []


def add_launched(covered: InProgress, plan: JobPlan) -> None:
    """Count what ``plan`` launches as in progress for the jobs planned after it."""
    for launch in plan.launches:
        for asset, keys in launch.partitions.items():
            covered[asset].update(keys)


def finished_ticks(
    instance: dg.DagsterInstance, jobs: Sequence[JobFile], done: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Jobs whose newest tick (not yet reconciled) has every refresh run finished, with that
    tick; and the jobs whose newest tick is still refreshing."""
    ready: dict[str, str] = {}
    waiting: list[str] = []
    for job in jobs:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name=f"{job.jid}_job"), limit=200)
        ticks = [r.tags[TICK_TAG] for r in runs if TICK_TAG in r.tags]
        if not ticks or ticks[0] == done.get(job.jid):
            continue
        if all(r.is_finished for r in runs if r.tags.get(TICK_TAG) == ticks[0]):
            ready[job.jid] = ticks[0]
        else:
            waiting.append(job.jid)
    return ready, waiting


def hand_refreshed_tiles(instance: dg.DagsterInstance, after: int) -> tuple[set[str], int]:
    """Tiles whose catalogue a run without a tick tag refreshed after event ``after``."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ACQUISITIONS, after_storage_id=after),
        limit=1000,
        ascending=True,
    ).records
    tiles: set[str] = set()
    for record in records:
        run = instance.get_run_by_id(record.run_id)
        if run is not None and TICK_TAG not in run.tags and record.partition_key:
            tiles.add(str(record.partition_key))
    return tiles, max((r.storage_id for r in records), default=after)


def read_cursor(text: str | None) -> tuple[int, dict[str, str]]:
    """(last acquisitions event read, job id -> last tick reconciled)."""
    if not text:
        return 0, {}
    try:
        data = json.loads(text)
        return int(data["after"]), {str(k): str(v) for k, v in data["ticks"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return int(text) if text.isdigit() else 0, {}  # a cursor from before ticks


def build_new_acquisitions_sensor(
    product_assets: Sequence[dg.AssetsDefinition],
    staged_providers: frozenset[str] = frozenset(),
    providers: Collection[str] | None = None,
) -> dg.SensorDefinition:
    """``new_acquisitions_sensor``: after a job tick's catalogue refresh, plan the job and
    launch what is missing (one backfill per ``process_by_line`` chunk)."""
    available = {key.to_user_string() for a in product_assets for key in a.keys}

    @dg.sensor(
        name="new_acquisitions_sensor",
        asset_selection=dg.AssetSelection.assets(*product_assets),
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="After each job tick's catalogue refresh, plans the job (wanted outputs "
        "minus those on disk or in progress) and launches one backfill of what is missing.",
    )
    def new_acquisitions_sensor(
        context: dg.SensorEvaluationContext, library: LibraryResource
    ) -> dg.SensorResult:
        after, done = read_cursor(context.cursor)
        lib = library.library()
        jobs, errors = load_jobs(lib.jobs_dir, providers=providers)
        for error in errors:
            context.log.warning(str(error))
        ready, waiting = finished_ticks(context.instance, jobs, done)
        tiles, last = hand_refreshed_tiles(context.instance, after)
        to_plan: dict[str, set[str] | None] = {jid: None for jid in ready}
        for job in jobs:
            listed = tiles & set(job.tiles)
            if listed and job.jid not in to_plan:
                to_plan[job.jid] = listed
        now = datetime.now(UTC)
        requests, messages = plan_and_request(
            context, lib, [j for j in jobs if j.jid in to_plan], to_plan, now.date(), now,
            available, staged_providers,
        )  # fmt: skip
        cursor = json.dumps({"after": last, "ticks": {**done, **ready}}, sort_keys=True)
        if waiting:
            messages.append(f"waiting for the catalogue refresh of {', '.join(waiting)}")
        message = "\n".join(messages) or "no job tick or catalogue refresh to reconcile"
        if requests:
            context.log.info(message)
            return dg.SensorResult(run_requests=requests, cursor=cursor)
        return dg.SensorResult(skip_reason=message, cursor=cursor)

    return new_acquisitions_sensor


def plan_and_request(
    context: dg.SensorEvaluationContext,
    lib: Library,
    jobs: Sequence[JobFile],
    tiles: Mapping[str, set[str] | None],
    today: date,
    now: datetime,
    available: Collection[str],
    staged_providers: Collection[str],
) -> tuple[list[dg.RunRequest], list[str]]:
    """Plan each job in turn and turn its launches into backfill requests."""
    covered = in_progress(context.instance)
    requests: list[dg.RunRequest] = []
    messages: list[str] = []
    for job in jobs:
        plan = plan_job(
            job, lib, today=today, now=now, in_progress=covered, available=available,
            staged_providers=staged_providers, tiles=tiles.get(job.jid),
        )  # fmt: skip
        add_launched(covered, plan)
        messages.append(plan.summary())
        for launch in plan.launches:
            requests.append(sensor_backfill(context, launch.partitions, launch.tags))
            messages.append(f"  backfill {launch.tags}: {launch.describe()}")
    return requests, messages
