"""``composite``: monthly per-pixel statistics of the masked indices, tile x month.

Thin glue over ``s2_assets.raster.composite``. A month depends on its days of every index
asset (tile identity, and a time-window mapping from the month onto its days), so Dagster
knows which days feed which month; a month whose days got new indices is stale, and
:func:`composite_automation_condition` recomputes it.

What a month composites: the indices and mask specs the run config names, else those the
jobs governing the month's days ask for, else every (index, mask) that has masked files in
the month. Outputs go to ``data/COMPOSITES/<INDEX>/<tile>/<YYYY-MM>/``.
"""

import datetime as dt
from collections.abc import Sequence
from functools import partial
from itertools import product
from pathlib import Path

import dagster as dg

from s2_assets.assets.run_options import RunOptions
from s2_assets.errors import S2AssetsError
from s2_assets.library.provenance import Provenance, file_checksum, metadata_for, write_record
from s2_assets.library.tree import Library
from s2_assets.outputs.cube import composite_dir, composite_stem, index_files, masked_pairs
from s2_assets.partitions import TileDate, TileMonth
from s2_assets.raster.composite import STATISTICS, CompositeRequest, compute_composite
from s2_assets.raster.indices import INDICES
from s2_assets.raster.types import WrittenRaster
from s2_assets.resources.library import LibraryResource
from s2_assets.specs import parse_index_name, parse_mask_spec


def month_of_days() -> dg.MultiPartitionMapping:
    """A month (downstream dimension ``month``) reads every day of it (upstream dimension
    ``date``) of the same tile."""
    return dg.MultiPartitionMapping(
        {
            "tile": dg.DimensionPartitionMapping("tile", dg.IdentityPartitionMapping()),
            "date": dg.DimensionPartitionMapping("month", dg.TimeWindowPartitionMapping()),
        }
    )


class CompositeConfig(dg.Config):
    """Attributes:
    indices: Index names to composite; empty takes the governing jobs', else every index
        with masked files in the month.
    masks: Mask specs of the inputs; empty takes the governing jobs', else every mask found.
    statistics: Any of median, mean, count, max.
    """

    indices: list[str] = []
    masks: list[str] = []
    statistics: list[str] = list(STATISTICS)


def composite_automation_condition() -> dg.AutomationCondition:
    """Request a month once any of its days got new indices, when none is in progress.

    Not Dagster's ``eager()``: it requires ``~any_deps_missing``, which never holds here
    (days without an acquisition are never materialized), and only looks at the latest
    month. The stale flag is cleared when the month is requested, or updated while none of
    its days changed: a day that gets new indices while the month's composite is running
    keeps the month stale, and it is requested again once that run is over (clearing on
    any update would lose that day). ``in_progress`` covers backfills too, so a backfill
    that composites the month itself is not doubled.
    """
    updated = dg.AutomationCondition.any_deps_updated()
    # Cleared when requested here, or when updated by another run (a backfill, the planner)
    # in an evaluation in which none of its days changed.
    handled = dg.AutomationCondition.newly_requested() | (
        dg.AutomationCondition.newly_updated() & ~updated
    )
    stale = updated.since(handled)
    return (
        stale.with_label("stale: a day of the month has new indices")
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("composite of a stale month")


def _wanted(
    config: CompositeConfig, options: RunOptions, lib: Library, key: TileMonth
) -> list[tuple[str, str]]:
    """(index, mask spec) pairs to composite for one month; see the module docstring."""
    days = [key.first + dt.timedelta(n) for n in range((key.last - key.first).days + 1)]
    governed = [o for o in (options(TileDate(key.tile, d)) for d in days) if o.job]
    indices = [parse_index_name(i) for i in config.indices] or sorted(
        {i for o in governed for i in o.indices}
    )
    masks = [str(parse_mask_spec(m)) for m in config.masks] or sorted(
        {m for o in governed for m in o.cloudmasks}
    )
    if indices and masks:
        return list(product(dict.fromkeys(indices), dict.fromkeys(masks)))
    found = masked_pairs(lib, key.tile, key.first, key.last)
    return sorted(
        (i, m) for i, m in found if (not indices or i in indices) and (not masks or m in masks)
    )


def _record(
    written: WrittenRaster, content: Path, *, inputs: Sequence[Path], lib_root: Path
) -> None:
    """Provenance beside each output (``content``: its bytes, before they are renamed into
    place): its checksum and the L2A of every input."""
    sources = ";".join(path.parent.name for path in inputs)
    write_record(
        written.path,
        Provenance(
            product_id=written.path.stem,
            kind="COMPOSITE",
            source_product=sources,
            checksum=file_checksum(content),
            mask_spec=written.mask_spec or "",
            index=written.name,
            extra={"INPUT_FILES": ";".join(str(p.relative_to(lib_root)) for p in inputs)},
        ),
    )


def build_composite_asset(
    partitions_def: dg.MultiPartitionsDefinition, indices: dg.AssetsDefinition
) -> dg.AssetsDefinition:
    """The ``composite`` asset over the index assets of ``indices`` (tile x date)."""
    mapping = month_of_days()
    deps = [dg.AssetDep(key, partition_mapping=mapping) for key in indices.keys]

    @dg.asset(
        partitions_def=partitions_def,
        deps=deps,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="raster",
        group_name="composites",
        kinds={"geotiff", "xarray"},
        automation_condition=composite_automation_condition(),
    )
    def composite(
        context: dg.AssetExecutionContext, config: CompositeConfig, library: LibraryResource
    ) -> dg.MaterializeResult:
        """Monthly median, mean, count and max of each masked index (one COG per statistic)."""
        lib = library.library()
        options = RunOptions(context, lib)
        total = 0
        for raw_key in context.partition_keys:
            key = TileMonth.parse(raw_key)
            try:
                pairs = _wanted(config, options, lib, key)
                made = [_one(lib, key, index, spec, config.statistics) for index, spec in pairs]
            except S2AssetsError as exc:
                raise dg.Failure(f"{key}: {exc}") from exc
            total += sum(len(files) for _, _, files in made)
            context.add_asset_metadata(_metadata(key, made), partition_key=raw_key)
        return dg.MaterializeResult(metadata={"files_written": total})

    return composite


def _one(
    lib: Library, key: TileMonth, index: str, spec: str, statistics: Sequence[str]
) -> tuple[str, list[Path], list[WrittenRaster]]:
    files = index_files(lib, key.tile, index, spec, first=key.first, last=key.last)
    definition = INDICES[index]
    request = CompositeRequest(
        files=tuple(files),
        out_dir=composite_dir(lib, index, key.tile, key.month),
        stem=composite_stem(key.tile, key.month, index, spec),
        name=index,
        mask_spec=spec,
        ramp=definition.ramp,
        stretch=definition.stretch,
        statistics=tuple(statistics),
    )
    inputs = [f.path for f in files]
    written = compute_composite(request, record=partial(_record, inputs=inputs, lib_root=lib.root))
    return f"{index} {spec}", inputs, written


def _input_rows(inputs: Sequence[Path]) -> list[dict[str, str]]:
    """Every input file: its path and L2A, and its provenance record (or why there is none)."""
    return [
        {"path": str(path), "l2a": path.parent.name, **record}
        for path, record in zip(inputs, metadata_for(inputs), strict=True)
    ]


def _metadata(
    key: TileMonth, made: Sequence[tuple[str, list[Path], list[WrittenRaster]]]
) -> dict[str, object]:
    summary = {
        label: {"observations": len(inputs), "files": [w.summary() for w in written]}
        for label, inputs, written in made
    }
    empty = [label for label, inputs, _ in made if not inputs]
    metadata: dict[str, object] = {
        "month": key.month,
        "composites": dg.MetadataValue.json(summary),
        "observations": sum(len(inputs) for _, inputs, _ in made),
        "files_written": sum(len(written) for _, _, written in made),
        "inputs": dg.MetadataValue.json(
            {label: _input_rows(inputs) for label, inputs, _ in made if inputs}
        ),
        "empty": dg.MetadataValue.json(empty),
    }
    if not made:
        metadata["note"] = (
            f"nothing to composite: no masked index file of {key.tile} in {key.month} and "
            "no job or run config naming an index and mask"
        )
    elif empty:
        metadata["note"] = f"no masked file in {key.month} for: {', '.join(empty)}"
    shown = next((w for _, _, written in made for w in written), None)
    if shown is not None:
        metadata["quicklook"] = dg.MetadataValue.md(
            f"{shown.path.name}\n\n{shown.quicklook_markdown()}"
        )
    return metadata


def build_composite_automation_sensor(composite: dg.AssetsDefinition) -> dg.SensorDefinition:
    """Evaluates :func:`composite_automation_condition`, running from the start (Dagster's
    implicit automation sensor would be created stopped)."""
    return dg.AutomationConditionSensorDefinition(
        "composite_automation_sensor",
        target=dg.AssetSelection.assets(composite),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
        description="Recomputes the monthly composites whose days got new masked indices.",
    )
