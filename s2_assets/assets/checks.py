"""Asset checks on the products, all blocking: ``l1c`` / ``l2a`` ``safe_complete``,
``cloudmask`` ``masks_valid`` and each index's ``index_valid``. What each one looks for is in
:mod:`s2_assets.library.checks`; this module runs it over a run's partitions.

The assets are partitioned and run ranged, so each check covers every (tile, date) of its
run and reports one result naming each file at fault and why. Run alone (the UI's "Execute
checks"), a check covers the partition of its asset's latest materialization. Blocking
checks stop what follows in the same run: a bad L2A never reaches the masks, a bad mask
never reaches the indices.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import rasterio

from s2_assets.library.checks import (
    MAX_LISTED,
    READ_ENV,
    FileFindings,
    index_files,
    l2a_grid,
    l2a_ids,
    mask_files,
    raster_problems,
    safe_problems,
)
from s2_assets.library.tree import Library
from s2_assets.partitions import TileDate
from s2_assets.resources.library import LibraryResource


def run_keys(context: dg.AssetCheckExecutionContext, asset_key: dg.AssetKey) -> list[TileDate]:
    """The (tile, date)s of the check's run, or of the asset's latest materialization."""
    if context.has_partition_key or context.has_partition_key_range:
        return sorted(TileDate.parse(k) for k in context.partition_keys)
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key), limit=1
    ).records
    partition = records[0].partition_key if records else None
    return [TileDate.parse(partition)] if partition else []


def check_result(
    asset_key: dg.AssetKey,
    name: str,
    keys: list[TileDate],
    checked: int,
    found: FileFindings,
    notes: list[str] | None = None,
) -> dg.AssetCheckResult:
    """One result for a run: passed when nothing is wrong; each problem names file and why.
    Only warnings: failed with WARN severity, which blocks nothing."""
    problems = found.errors + found.warnings
    if problems:
        description = f"{len(problems)} problem(s) in {checked} checked; first: {problems[0]}"
    else:
        description = f"{checked} checked in {len(keys)} partition(s): all good"
    metadata: dict[str, Any] = {
        "partitions": len(keys),
        "checked": checked,
        "problems": len(problems),
        "failures": dg.MetadataValue.json(found.errors[:MAX_LISTED]),
    }
    if found.warnings:
        metadata["warnings"] = dg.MetadataValue.json(found.warnings[:MAX_LISTED])
    if notes:
        metadata["notes"] = dg.MetadataValue.json(notes[:MAX_LISTED])
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=name,
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR if found.errors else dg.AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )


def derived_findings(
    lib: Library, keys: list[TileDate], *, index: str | None
) -> tuple[int, FileFindings, list[str]]:
    """Check the masks (``index`` None) or the files of one index of every (tile, date):
    how many files were checked, what is wrong, and notes on what could not be compared."""
    checked, found, notes = 0, FileFindings(), []
    with rasterio.Env(**READ_ENV):
        for key in keys:
            for l2a_id in l2a_ids(lib, key.tile, key.date):
                if index is None:
                    files = mask_files(lib, key.tile, l2a_id)
                else:
                    files = index_files(lib, index, key.tile, l2a_id)
                grid = (
                    l2a_grid(lib, key.tile, l2a_id, 20 if index is None else 10) if files else None
                )
                if files and grid is None:
                    notes.append(f"{l2a_id}: grid not compared (no readable L2A or SCL)")
                for path in files:
                    checked += 1
                    kind = "mask" if index is None else "index"
                    found += raster_problems(path, kind=kind, index=index, grid=grid)
    return checked, found, notes


# ------------------------------------------------------------------- the Dagster checks


def _safe_check(asset: dg.AssetsDefinition, level: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name="safe_complete",
        blocking=True,
        description=f"Every {level} SAFE of the run's partitions is complete and decodes.",
    )
    def safe_complete(
        context: dg.AssetCheckExecutionContext, library: LibraryResource
    ) -> dg.AssetCheckResult:
        lib = library.library()
        keys = run_keys(context, asset.key)
        found, checked = FileFindings(), 0
        with rasterio.Env(**READ_ENV):
            for key in keys:
                for product in lib.products(level, key.tile, key.date):
                    checked += 1
                    found.errors += safe_problems(product.path, level)
        return check_result(asset.key, "safe_complete", keys, checked, found)

    return safe_complete


def _mask_check(cloudmask: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=cloudmask,
        name="masks_valid",
        blocking=True,
        description="Masks on the L2A's 20 m grid and CRS, 0/1/255 only, nodata 255, valid COG.",
    )
    def masks_valid(
        context: dg.AssetCheckExecutionContext, library: LibraryResource
    ) -> dg.AssetCheckResult:
        keys = run_keys(context, cloudmask.key)
        checked, found, notes = derived_findings(library.library(), keys, index=None)
        return check_result(cloudmask.key, "masks_valid", keys, checked, found, notes)

    return masks_valid


def _index_checks(indices: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    specs = [
        dg.AssetCheckSpec(
            "index_valid",
            asset=key,
            blocking=True,
            description="Raw and masked files on the L2A's 10 m grid and CRS, values in the "
            "index's range, nodata declared, valid COG.",
        )
        for key in sorted(indices.keys)
    ]

    @dg.multi_asset_check(specs=specs, can_subset=True, name="indices_valid")
    def indices_valid(
        context: dg.AssetCheckExecutionContext, library: LibraryResource
    ) -> Iterator[dg.AssetCheckResult]:
        lib = library.library()
        for check_key in sorted(context.selected_asset_check_keys):
            keys = run_keys(context, check_key.asset_key)
            index = check_key.asset_key.path[-1].upper()
            checked, found, notes = derived_findings(lib, keys, index=index)
            yield check_result(check_key.asset_key, "index_valid", keys, checked, found, notes)

    return indices_valid


def build_checks(
    l1c: dg.AssetsDefinition,
    l2a: dg.AssetsDefinition,
    cloudmask: dg.AssetsDefinition,
    indices: dg.AssetsDefinition,
) -> list[dg.AssetChecksDefinition]:
    """Every product check: SAFEs of ``l1c`` and ``l2a``, masks, and each index asset."""
    return [
        _safe_check(l1c, "L1C"),
        _safe_check(l2a, "L2A"),
        _mask_check(cloudmask),
        _index_checks(indices),
    ]
