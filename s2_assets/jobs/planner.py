"""The planner: what a job wants, what the library holds, what is missing. Pure (no Dagster).

sen2chain ran a job as a reconciliation; so do we, with one planner behind every way work
starts (schedule tick, sensor, ``s2-assets run``, staging) and behind the product assets.

- **Wanted**: for each enabled task row, the (tile, date) partitions in its window that have
  catalogue products passing its filters (cloud cover, provider, baselines), and for each
  acquisition of such a partition the outputs the row asks for: the product level
  (``download``, ``compute_l2a``), each cloud-mask spec, each index raw and once per mask.
  A partition is governed by the first enabled row (in file order) whose tile and window
  hold it. ``download = l2a`` with ``compute_l2a``: the L2A is downloaded; Sen2Cor runs only
  for acquisitions with no L2A in the catalogue whose L1C is already in the library.
- **Present**: on disk under its final name. Masks and indices count for the acquisition
  whatever L2A id they were made from. sen2chain's "ref" logic, by intent: when every wanted
  mask and index of an acquisition exists and a remove rule of the row would remove its L2A
  (or L1C), that product counts as present and is not fetched again. An L1C counts as present
  when the acquisition's L2A is (sen2chain never downloads an L1C whose L2A it has).
- **Missing** = wanted - present - what a queued or running run already covers.
- A product that keeps failing backs off (:mod:`s2_assets.library.failures`): its outputs stay
  missing and visible with their last error, but are not launched until the back-off ends.
- Products of a staged provider (EODC behind Chiller) are held until staged: their files go
  to ``to_stage`` and their partitions launch once the staging path says they are ready.

Planning lists folders and reads the catalogue tables; it never opens a raster.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Collection, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from s2_assets.jobs.model import JobFile, task_chunks
from s2_assets.jobs.options import JOB_TAG, TASK_TAG, TaskOptions
from s2_assets.library import acquisitions as catalogue
from s2_assets.library.failures import FailureRecord, read_failures
from s2_assets.library.tree import Library
from s2_assets.partitions import TileDate
from s2_assets.products import ProductName
from s2_assets.providers.base import ProductRecord

# Days between two missing days of a tile that a backfill fills in, so Dagster makes one
# ranged run of them rather than one run per stretch (each run costs seconds to start).
MAX_GAP_DAYS = 30
OUTPUT_FORMATS = (".tif", ".jp2")
Acquisition = tuple[str, str, str, str | None]


def acquisition_of(name: ProductName) -> Acquisition:
    """What an L1C and its L2A (downloaded or computed) have in common."""
    stamp = name.sensing.strftime("%Y%m%dT%H%M%S")
    return (name.mission, stamp, f"R{name.relative_orbit:03d}", name.tile)


def acquisition_key(product_id: str) -> Acquisition:
    """:func:`acquisition_of` a product id, read from its fields without a full parse (the
    planner meets hundreds of thousands of names); legacy names take the full parse."""
    parts = product_id.split("_")
    if (
        len(parts) == 7
        and parts[1].startswith("MSI")
        and parts[4].startswith("R")
        and parts[5].startswith("T")
        and len(parts[2]) == 15
    ):
        return (parts[0], parts[2], parts[4], parts[5][1:])
    return acquisition_of(ProductName.parse(product_id))


@dataclass(frozen=True)
class Output:
    """One wanted output of one acquisition.

    Attributes:
        asset: The Dagster asset that makes it (``l1c``, ``l2a``, ``cloudmask``, ``ndvi``...).
        label: ``L1C``, ``L2A``, a mask spec, ``NDVI`` or ``NDVI_<mask spec>``.
        product: The product the work acts on (the failure ledger's key).
        stage: The failure ledger's stage: ``l1c``, ``l2a``, ``cloudmask`` or ``indices``.
        location: For a fetched product, where the provider has it; else empty.
        tape: Fetched from a provider whose files must be staged first.
    """

    asset: str
    label: str
    product: str
    stage: str
    location: str = ""
    tape: bool = False


class TileDisk:
    """What one tile has on disk, listed once: products by acquisition, mask and index files
    by acquisition (whatever L2A id they were made from)."""

    def __init__(self, lib: Library, tile: str) -> None:
        self.lib = lib
        self.tile = tile
        self.ids: dict[str, set[str]] = {"L1C": set(), "L2A": set()}
        self.acquisitions: dict[str, set[Acquisition]] = {"L1C": set(), "L2A": set()}
        self.l2a_ids: dict[Acquisition, str] = {}
        for level in ("L1C", "L2A"):
            for product_id in _products_in(lib.level_dir(level, tile), level):
                self.ids[level].add(product_id)
                acquisition = acquisition_key(product_id)
                self.acquisitions[level].add(acquisition)
                if level == "L2A":
                    self.l2a_ids.setdefault(acquisition, product_id)
        self._masks: dict[Acquisition, set[str]] | None = None
        self._indices: dict[str, dict[Acquisition, set[str]]] = {}

    def has(self, record: ProductRecord) -> bool:
        return record.product_id in self.ids.get(record.level, set())

    def masks(self) -> dict[Acquisition, set[str]]:
        if self._masks is None:
            self._masks = _outputs_below(self.lib.mask_dir(self.tile, "_").parent, "")
        return self._masks

    def index(self, index: str) -> dict[Acquisition, set[str]]:
        if index not in self._indices:
            folder = self.lib.index_dir(index, self.tile, "_").parent
            self._indices[index] = _outputs_below(folder, index)
        return self._indices[index]


def _products_in(folder: os.PathLike[str], level: str) -> list[str]:
    """Product ids of the ``<id>.SAFE`` folders (or links to them) of one level and tile."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        name = entry.name
        if name.endswith(".SAFE") and f"MSI{level}" in name and entry.is_dir():
            found.append(name.removesuffix(".SAFE"))
    return sorted(found)


def _outputs_below(folder: str | os.PathLike[str], index: str) -> dict[Acquisition, set[str]]:
    """``<folder>/<L2A id>/<L2A id>_<suffix>.tif|jp2`` -> suffixes by acquisition.

    For masks (``index`` empty) the suffix is the spec; for an index it is ``NDVI`` or
    ``NDVI_<spec>``. Hidden files (half-written outputs) do not count.
    """
    found: dict[Acquisition, set[str]] = {}
    try:
        products = list(os.scandir(folder))
    except FileNotFoundError:
        return found
    for entry in products:
        try:
            acquisition = acquisition_key(entry.name)
        except ValueError:
            continue
        prefix = f"{entry.name}_"
        try:
            files = os.listdir(entry.path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        labels = found.setdefault(acquisition, set())
        for file in files:
            stem, ext = os.path.splitext(file)
            if ext in OUTPUT_FORMATS and stem.startswith(prefix):
                labels.add(stem[len(prefix) :])
    return found


def day_outputs(
    options: TaskOptions,
    records: Sequence[ProductRecord],
    disk: TileDisk,
    staged_providers: Collection[str] = (),
) -> list[tuple[Output, bool]]:
    """The outputs ``options`` wants from one (tile, day)'s catalogue ``records``, each with
    whether it is present (see the module docstring for the rules)."""
    l1c = options.select([r for r in records if r.level == "L1C"])
    l2a = options.select([r for r in records if r.level == "L2A"])
    by_acquisition: dict[Acquisition, tuple[list[ProductRecord], list[ProductRecord]]] = {}
    for record in l1c:
        by_acquisition.setdefault(acquisition_key(record.product_id), ([], []))[0].append(record)
    for record in l2a:
        by_acquisition.setdefault(acquisition_key(record.product_id), ([], []))[1].append(record)
    found: list[tuple[Output, bool]] = []
    for acquisition, (l1c_records, l2a_records) in sorted(by_acquisition.items()):
        found += _acquisition_outputs(
            options, acquisition, l1c_records, l2a_records, disk, staged_providers
        )
    return found


def _fetch(record: ProductRecord, staged: Collection[str]) -> Output:
    level = record.level.lower()
    return Output(
        level, record.level, record.product_id, level, record.location, record.provider in staged
    )


def _acquisition_outputs(
    options: TaskOptions,
    acquisition: Acquisition,
    l1c: list[ProductRecord],
    l2a: list[ProductRecord],
    disk: TileDisk,
    staged: Collection[str],
) -> list[tuple[Output, bool]]:
    l2a_on_disk = acquisition in disk.acquisitions["L2A"]
    l1c_on_disk = [r for r in l1c if disk.has(r)]
    cloud = next((r.cloud_cover for r in [*l2a, *l1c] if r.cloud_cover is not None), None)
    levels: list[tuple[Output, bool]] = []
    # What sen2chain's ref logic is for: the L2A (L1C) may go once the outputs exist.
    removable = {rule.level for rule in options.remove if rule.matches(cloud)}
    derived = _derived(options, acquisition, disk, l2a, l1c)
    refs_done = bool(derived) and all(present for _, present in derived)
    l2a_ok = l2a_on_disk or (refs_done and "l2a" in removable)
    if options.download == "l2a":
        levels += [(_fetch(r, staged), disk.has(r) or l2a_ok) for r in l2a]
        if options.compute_l2a and not l2a:
            levels += [(_sen2cor(r), l2a_ok) for r in l1c_on_disk[:1]]
    elif options.download == "l1c":
        l1c_ok = l2a_ok or (refs_done and "l1c" in removable)
        levels += [(_fetch(r, staged), disk.has(r) or l1c_ok) for r in l1c]
        if options.compute_l2a and l1c:
            levels.append((_sen2cor(l1c[0]), l2a_ok))
    elif options.compute_l2a:
        levels += [(_sen2cor(r), l2a_ok) for r in l1c_on_disk[:1]]
    makes_l2a = any(out.asset == "l2a" for out, _ in levels)
    if not (makes_l2a or l2a_on_disk):
        return levels
    return levels + derived


def _sen2cor(l1c: ProductRecord) -> Output:
    return Output("l2a", "L2A", l1c.product_id, "l2a")


def _derived(
    options: TaskOptions,
    acquisition: Acquisition,
    disk: TileDisk,
    l2a: list[ProductRecord],
    l1c: list[ProductRecord],
) -> list[tuple[Output, bool]]:
    """Masks and indices of the acquisition; their failure key is the L2A they are made from."""
    if not options.cloudmasks and not options.indices:
        return []
    source = disk.l2a_ids.get(acquisition)
    if source is None:
        source = (
            l2a[0].product_id
            if l2a
            else l1c[0].product_id.replace("MSIL1C", "MSIL2A")
            if l1c
            else ""
        )
    found: list[tuple[Output, bool]] = []
    if options.cloudmasks:
        masks = disk.masks().get(acquisition, set())
        for spec in options.cloudmasks:
            found.append((Output("cloudmask", spec, source, "cloudmask"), spec in masks))
    for index in options.indices:
        have = disk.index(index).get(acquisition, set())
        for label in (index, *(f"{index}_{spec}" for spec in options.cloudmasks)):
            found.append((Output(index.lower(), label, source, "indices"), label in have))
    return found


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
    by_day: dict[TileDate, list[ProductRecord]] = {}
    for tile, records in tables.items():
        for record in records:
            by_day.setdefault(TileDate(tile, record.date), []).append(record)
    governed = governed_days(job, tables, today)
    options = {t.index: TaskOptions.from_task(job, t) for t in job.enabled_tasks}
    chunk_of = {
        task.index: n
        for n, chunk in enumerate(task_chunks(job.enabled_tasks, job.settings.process_by_line))
        for task in chunk
    }
    plan = JobPlan(job.jid)
    launch: dict[int, tuple[set[int], dict[str, set[TileDate]]]] = {}
    disks: dict[str, TileDisk] = {}
    failures: dict[str, dict[tuple[str, str], FailureRecord]] = {}
    for key in sorted(governed):
        task = governed[key]
        disk = disks.get(key.tile) or disks.setdefault(key.tile, TileDisk(lib, key.tile))
        if key.tile not in failures:
            failures[key.tile] = read_failures(lib.logs_dir, key.tile)
        task_options = options[task]
        outputs = day_outputs(task_options, by_day[key], disk, staged_providers)
        held: set[str] = set()  # products whose level output cannot start now
        todo: set[str] = set()
        for output, present in outputs:
            plan.wanted += 1
            if present:
                plan.present += 1
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
        if "l2a" not in todo and any(o.asset == "l2a" and o.product in held for o, _ in outputs):
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
