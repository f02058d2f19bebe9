"""The ``plan`` measure of ``benchmarks/orchestration.py``: planning one job of T tiles x Y years
against a library and an instance that hold that history.

The library gets, per tile, one acquisition every 5 days (S2A and S2B alternating) over the
years: its L1C and L2A catalogue rows, the L2A folder, one cloud mask and NDVI raw and masked
(zero-byte files under their final names: the planner only lists folders). The job asks for
all of it (``download = l2a``, one mask, NDVI), so every output is present and the planner
lists everything, its worst case. The instance holds a backfill of the whole history still
in progress (the initial backfill, of every asset the job wants), which the planner reads
as work already covered.

Two states are planned: ``present`` (every output on disk: the steady state) and
``in_progress`` (the initial backfill half done: the outputs of the later half of the
history removed, so the planner looks each of those up in the backfill in progress).
"""

from __future__ import annotations

import shutil
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg

MASK = "CM004-CSH1-CMP1-CHP1-TCI1-ITER0"
WANTED_ASSETS = ("l2a", "cloudmask", "ndvi")  # what job_bench.cfg asks for


def build_history(library: Path, tiles: list[str], first: date, last: date) -> int:
    """Write the catalogue, products and outputs; returns the number of acquisitions."""
    from s2_assets.library import acquisitions as catalogue
    from s2_assets.library.tree import Library
    from s2_assets.providers.base import ProductRecord

    lib = Library(library)
    count = 0
    for tile in tiles:
        records = []
        day = first
        n = 0
        while day <= last:
            mission = "S2A" if n % 2 == 0 else "S2B"
            stamp = day.strftime("%Y%m%d")
            sensing = datetime(day.year, day.month, day.day, 6, 35, 11, tzinfo=UTC)
            for level in ("L1C", "L2A"):
                product_id = (
                    f"{mission}_MSI{level}_{stamp}T063511_N0500_R120_T{tile}_{stamp}T083511"
                )
                records.append(
                    ProductRecord(
                        product_id,
                        level,
                        tile,
                        sensing,
                        10.0,
                        "05.00",
                        "archive",
                        f"/archive/{product_id}.zip",
                    )
                )
            l2a = records[-1].product_id
            (lib.level_dir("L2A", tile) / f"{l2a}.SAFE").mkdir(parents=True)
            masks = lib.mask_dir(tile, l2a)
            masks.mkdir(parents=True)
            (masks / f"{l2a}_{MASK}.tif").touch()
            ndvi = lib.index_dir("NDVI", tile, l2a)
            ndvi.mkdir(parents=True)
            (ndvi / f"{l2a}_NDVI.tif").touch()
            (ndvi / f"{l2a}_NDVI_{MASK}.tif").touch()
            day += timedelta(days=5)
            n += 1
            count += 1
        catalogue.write_table(lib.acquisitions_path(tile), records)
    jobs = lib.jobs_dir
    jobs.mkdir(parents=True, exist_ok=True)
    rows = "".join(
        f"{tile};{first};{last};100;archive;True;l2a;False;{MASK};NDVI;;bench\n" for tile in tiles
    )
    (jobs / "job_bench.cfg").write_text(
        "logs = False\ntiming = 0 1 * * *\nprovider = archive\n"
        "tile;date_min;date_max;max_clouds;provider;filter_max_pb;download;compute_l2a;"
        f"cloudmasks;indices;remove;comments\n{rows}"
    )
    return count


def store_history_backfill(
    instance: dg.DagsterInstance, defs: dg.Definitions, tiles: list[str], first: date, last: date
) -> int:
    """A requested (in progress) backfill of the job's assets over the whole history; returns
    its size in asset partitions."""
    from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
    from dagster._core.definitions.events import AssetKeyPartitionKey
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    known = set(instance.get_dynamic_partitions("tiles"))
    instance.add_dynamic_partitions("tiles", [t for t in tiles if t not in known])
    span = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    pairs = {
        AssetKeyPartitionKey(dg.AssetKey(asset), f"{day.isoformat()}|{tile}")
        for asset in WANTED_ASSETS
        for tile in tiles
        for day in span
    }
    graph = defs.get_repository_def().asset_graph
    subset = AssetGraphSubset.from_asset_partition_set(pairs, graph)
    instance.add_backfill(
        PartitionBackfill.from_asset_graph_subset(
            backfill_id=make_new_backfill_id(),
            backfill_timestamp=time.time(),
            asset_graph_subset=subset,
            dynamic_partitions_store=instance,
            tags={},
            title=None,
            description=None,
            run_config=None,
        )
    )
    return len(pairs)


def remove_later_half(library: Path, tiles: list[str], first: date, last: date) -> int:
    """Delete the L2A, mask and NDVI folders of the acquisitions after the middle of the
    history (not yet made by the backfill in progress); returns how many acquisitions."""
    from s2_assets.library.tree import Library

    lib = Library(library)
    middle = first + (last - first) / 2
    removed = 0
    for tile in tiles:
        for folder in sorted(lib.level_dir("L2A", tile).iterdir()):
            l2a = folder.name.removesuffix(".SAFE")
            if datetime.strptime(l2a.split("_")[2], "%Y%m%dT%H%M%S").date() <= middle:
                continue
            for path in (folder, lib.mask_dir(tile, l2a), lib.index_dir("NDVI", tile, l2a)):
                shutil.rmtree(path)
            removed += 1
    return removed


def measure_plan(
    instance: dg.DagsterInstance, defs: dg.Definitions, library: Path, tiles: list[str],
    first: date, last: date, rounds: int = 1,
) -> dict[str, float | int | list[float]]:  # fmt: skip
    """Plan the bench job ``rounds`` times (in-progress lookup included); the figures to
    report: medians of wall and CPU seconds, each round's, and the plan's counts."""
    from s2_assets.jobs.jobfile import load_job
    from s2_assets.jobs.planner import plan_job
    from s2_assets.jobs.reconcile import in_progress
    from s2_assets.library.tree import Library

    lib = Library(library)
    job = load_job(lib.jobs_dir / "job_bench.cfg")
    now = datetime.combine(last + timedelta(days=1), datetime.min.time(), UTC)
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        covered = in_progress(instance)
        plan = plan_job(job, lib, today=now.date(), now=now, in_progress=covered)
        walls.append(round(time.perf_counter() - wall, 3))
        cpus.append(round(time.process_time() - cpu, 3))
    return {
        "seconds": statistics.median(walls),
        "cpu_seconds": statistics.median(cpus),
        "rounds": rounds,
        "wall_rounds": walls,
        "cpu_rounds": cpus,
        "wanted": plan.wanted,
        "present": plan.present,
        "in_progress": plan.in_progress,
        "missing": len(plan.missing),
        "launches": len(plan.launches),
        "backfill_asset_partitions": sum(len(covered[asset]) for asset in WANTED_ASSETS),
    }
