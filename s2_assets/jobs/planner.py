"""The planner: what a job wants, what the library holds, what is missing. Pure (no Dagster).

sen2chain ran a job as a reconciliation; so do we, with one planner behind every way work
starts (schedule tick, sensor, ``s2-assets run``, staging) and behind the product assets.

- **Wanted**: for each enabled task row, the (tile, date) partitions in its window that have
  catalogue products passing its filters, and for each acquisition of such a partition the
  outputs the row asks for (:mod:`s2_assets.jobs.wanted`, which also says what counts as
  present). A partition is governed by the first enabled row (in file order) whose tile and
  window hold it.
- **Present**: on disk under its final name (:mod:`s2_assets.jobs.tile_disk`).
- **Missing** = wanted - present - what a queued or running run already covers.
- A product that keeps failing backs off (:mod:`s2_assets.library.failures`): its outputs stay
  missing and visible with their last error, but are not launched until the back-off ends.
- Products of a staged provider (EODC behind Chiller) are held until staged: their files go
  to ``to_stage`` and their partitions launch once the staging path says they are ready.

Planning lists folders and reads the catalogue tables; it never opens a raster.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from s2_assets.jobs.model import JobFile, task_chunks
from s2_assets.jobs.options import JOB_TAG, TASK_TAG, TaskOptions
from s2_assets.jobs.tile_disk import TileDisk
from s2_assets.jobs.wanted import Output, selected_outputs
from s2_assets.library import acquisitions as catalogue
from s2_assets.library.failures import FailureRecord, read_failures
from s2_assets.library.tree import Library
from s2_assets.partitions import TileDate
from s2_assets.providers.base import ProductRecord

# Days between two missing days of a tile that a backfill fills in, so Dagster makes one
# ranged run of them rather than one run per stretch (each run costs seconds to start).
MAX_GAP_DAYS = 30


@dataclass(frozen=True)
class Launch:
    """One backfill to start: its tags and, per asset, the partitions to materialize."""

    tags: dict[str, str]
    partitions: dict[str, set[TileDate]]

    def describe(self) -> str:
        return ", ".join(f"{n} x {len(ks)}" for n, ks in sorted(self.partitions.items()))


@dataclass
class JobPlan:
    """A job's desired state against the library, and what to start now."""

    jid: str
    wanted: int = 0
    present: int = 0
    in_progress: int = 0
    missing: list[tuple[TileDate, Output]] = field(default_factory=list)
    failing: dict[tuple[str, str], FailureRecord] = field(default_factory=dict)
    backing_off: set[tuple[str, str]] = field(default_factory=set)
    to_stage: dict[TileDate, set[str]] = field(default_factory=dict)
    launches: list[Launch] = field(default_factory=list)

    @property
    def launched_outputs(self) -> int:
        return sum(len(ks) for launch in self.launches for ks in launch.partitions.values())

    def summary(self) -> str:
        """One line for a tick message, then one line per failing product."""
        if self.wanted and not self.missing and not self.in_progress:
            head = f"{self.jid}: {self.wanted} wanted outputs, all present"
        else:
            head = (
                f"{self.jid}: {self.wanted} wanted outputs: {self.present} present, "
                f"{len(self.missing)} missing, {self.in_progress} in progress, "
                f"{len(self.failing)} failing product(s)"
            )
            if self.backing_off:
                head += f" ({len(self.backing_off)} backing off)"
            if self.to_stage:
                files = len({f for fs in self.to_stage.values() for f in fs})
                head += f", {files} file(s) to stage"
        lines = [head]
        for (stage, product), failure in sorted(self.failing.items()):
            lines.append(
                f"  failing {stage} {product}: {failure.count} time(s), last "
                f"{failure.last.isoformat(timespec='seconds')}, retry after "
                f"{failure.retry_at.isoformat(timespec='seconds')}: {failure.error}"
            )
        return "\n".join(lines)


def governed_days(
    job: JobFile, tables: Mapping[str, Sequence[ProductRecord]], today: date
) -> dict[TileDate, int]:
    """(tile, day) -> the governing row, for every catalogue day inside a row's window."""
    days_by_tile: dict[str, set[date]] = {}
    for tile, records in tables.items():
        days_by_tile[tile] = {r.date for r in records}
    governed: dict[TileDate, int] = {}
    for task in job.enabled_tasks:
        start, end = task.window(today)
        end = min(end, today)
        for day in days_by_tile.get(task.tile, ()):
            if start <= day <= end:
                governed.setdefault(TileDate(task.tile, day), task.index)
    return governed


def plan_job(
    job: JobFile,
    lib: Library,
    *,
    today: date,
    now: datetime,
    in_progress: Mapping[str, Container[TileDate]] = {},
    available: Collection[str] | None = None,
    staged_providers: Collection[str] = (),
    tape_ready: Collection[TileDate] = (),
    tiles: Collection[str] | None = None,
    read_table: Callable[[str], list[ProductRecord]] | None = None,
) -> JobPlan:
    """Plan ``job`` against ``lib`` at ``now``.

    Args:
        in_progress: per asset, the partitions a queued or running run already covers.
        available: the asset names deployed; None means every one.
        staged_providers: providers whose files must be staged (Chiller) before reading.
        tape_ready: partitions whose tape files are staged.
        tiles: only these tiles (default: every tile of the job).
        read_table: tile -> catalogue rows (default: the library's acquisitions tables).
    """
    reader = read_table or (lambda tile: catalogue.read_table(lib.acquisitions_path(tile)))
    wanted_tiles = sorted(set(job.tiles) if tiles is None else set(job.tiles) & set(tiles))
    tables = {tile: reader(tile) for tile in wanted_tiles}
    governed = governed_days(job, tables, today)
    options = {t.index: TaskOptions.from_task(job, t) for t in job.enabled_tasks}
    chunk_of = {
        task.index: n
        for n, chunk in enumerate(task_chunks(job.enabled_tasks, job.settings.process_by_line))
        for task in chunk
    }
    tile_of = {t.index: t.tile for t in job.enabled_tasks}
    # Each row's products, selected once over its tile's table, by level and day.
    selected: dict[int, dict[str, dict[date, list[ProductRecord]]]] = {}
    for index in set(governed.values()):
        by_level: dict[str, dict[date, list[ProductRecord]]] = {"L1C": {}, "L2A": {}}
        for level, days in by_level.items():
            rows = [r for r in tables[tile_of[index]] if r.level == level]
            for record in options[index].select(rows):
                days.setdefault(record.date, []).append(record)
        selected[index] = by_level
    plan = JobPlan(job.jid)
    launch: dict[int, tuple[set[int], dict[str, set[TileDate]]]] = {}
    disks: dict[str, TileDisk] = {}
    failures: dict[str, dict[tuple[str, str], FailureRecord]] = {}
    present_count = 0
    for key in sorted(governed, key=lambda k: (k.tile, k.date)):  # TileDate's own order
        task = governed[key]
        disk = disks.get(key.tile) or disks.setdefault(key.tile, TileDisk(lib, key.tile))
        if key.tile not in failures:
            failures[key.tile] = read_failures(lib.logs_dir, key.tile)
        task_options = options[task]
        chosen = selected[task]
        l1c, l2a = chosen["L1C"].get(key.date, ()), chosen["L2A"].get(key.date, ())
        outputs = selected_outputs(task_options, l1c, l2a, disk, staged_providers)
        held: set[str] = set()  # products whose level output cannot start now
        todo: set[str] = set()
        plan.wanted += len(outputs)
        for output, present in outputs:
            if present:
                present_count += 1
                continue
            if key in in_progress.get(output.asset, ()):
                plan.in_progress += 1
                continue
            plan.missing.append((key, output))
            failure = failures[key.tile].get((output.stage, output.product))
            if failure is not None:
                plan.failing[(output.stage, output.product)] = failure
            if output.tape and key not in tape_ready:
                plan.to_stage.setdefault(key, set()).add(output.location)
                held.add(output.product)
            elif failure is not None and failure.backing_off(now):
                plan.backing_off.add((output.stage, output.product))
                held.add(output.product)
            elif output.asset in ("l1c", "l2a") or output.product not in held:
                todo.add(output.asset)
        if (
            held
            and "l2a" not in todo
            and any(o.asset == "l2a" and o.product in held for o, _ in outputs)
        ):
            # The L2A waits (tape, back-off): masks and indices of it cannot be made either.
            todo -= {o.asset for o, p in outputs if not p and o.stage in ("cloudmask", "indices")}
        todo = {a for a in todo if available is None or a in available}
        if not todo:
            continue
        if (task_options.remove or task_options.clean_after) and (
            available is None or "housekeeping" in available
        ):
            todo.add("housekeeping")
        tasks, assets = launch.setdefault(chunk_of.get(task, 0), (set(), {}))
        tasks.add(task)
        for asset in todo:
            assets.setdefault(asset, set()).add(key)
    plan.present = present_count
    for _, (tasks, assets) in sorted(launch.items()):
        tags = {JOB_TAG: job.jid, TASK_TAG: ",".join(str(t) for t in sorted(tasks))}
        # Never fill over a day whose files still wait on tape (a run would read them cold)
        # nor over one in progress.
        partitions = {
            asset: fill_gaps(keys, _Busy(plan.to_stage, in_progress.get(asset, ())))
            for asset, keys in assets.items()
        }
        plan.launches.append(Launch(tags, partitions))
    return plan


@dataclass(frozen=True)
class _Busy:
    """Days a gap may not be filled over: either container holds them."""

    first: Container[TileDate]
    second: Container[TileDate]

    def __contains__(self, key: object) -> bool:
        return key in self.first or key in self.second


def fill_gaps(
    keys: Iterable[TileDate], busy: Container[TileDate] = (), max_gap: int = MAX_GAP_DAYS
) -> set[TileDate]:
    """``keys`` plus, per tile, the days between two of them at most ``max_gap`` days apart
    (not ``busy`` ones), so each stretch becomes one ranged run."""
    filled: set[TileDate] = set(keys)
    by_tile: dict[str, list[date]] = {}
    for key in filled:
        by_tile.setdefault(key.tile, []).append(key.date)
    for tile, days in by_tile.items():
        days.sort()
        for first, second in itertools.pairwise(days):
            gap = (second - first).days
            if 1 < gap <= max_gap:
                for n in range(1, gap):
                    day = TileDate(tile, first + timedelta(days=n))
                    if day not in busy:
                        filled.add(day)
    return filled
