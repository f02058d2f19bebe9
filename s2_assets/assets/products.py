"""``l1c`` and ``l2a``: the SAFE products of a (tile, date), fetched or computed.

Both come from one factory. A run may cover many partitions (ranged backfill runs); each
partition gets its own metadata. A (tile, date) with no product is recorded as checked with
``products: 0``: Dagster materializes every day of a ranged run, and one run per acquisition
day would cost seconds of start-up each.

What to fetch or compute comes from the planner's rules (:mod:`s2_assets.jobs.wanted`)
applied to the partition: only products the governing task wants and the library lacks, so
a ranged run that spans days already done fetches nothing again (nor an L2A a remove rule
deleted after its masks and indices were made). ``download = l2a`` with ``compute_l2a``: the L2A is
downloaded, and Sen2Cor runs only for acquisitions without an L2A in the catalogue whose L1C
is in the library. A product that fails is written to the failure ledger (its last error,
for the back-off and ``s2-assets jobs status``) and cleared when it succeeds; a run started
by a job skips products still backing off.

Fetching and Sen2Cor live in :mod:`s2_assets.assets.product_fetch`, the per-run options in
:mod:`s2_assets.assets.run_options`; this module is the asset definition and its metadata.
The provenance of each product fetched or computed records the run (``S2_ASSETS_RUN``: the
backfill id, else the run id), which is what the ``-new`` remove rules mean by "this run".
"""

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from s2_assets.assets import run_metadata
from s2_assets.assets.product_fetch import (
    Outcome,
    compute_l2a,
    fetch_products,
    with_cloud_cover,
)
from s2_assets.assets.run_options import RunOptions
from s2_assets.jobs.options import TaskOptions
from s2_assets.jobs.tile_disk import TileDisk
from s2_assets.jobs.wanted import day_outputs
from s2_assets.library import acquisitions as catalogue
from s2_assets.library.failures import FailureRecord, read_failures
from s2_assets.library.provenance import metadata_for
from s2_assets.library.tree import Library, LibraryProduct, directory_bytes
from s2_assets.partitions import TileDate
from s2_assets.providers.base import ProductRecord
from s2_assets.resources.library import LibraryResource
from s2_assets.resources.providers import ProvidersResource
from s2_assets.resources.sen2cor import Sen2CorResource
from s2_assets.sen2cor.sideproducts import copy_side_products


class SelectionConfig(dg.Config):
    """Overrides of the governing job task's filters; unset fields keep the task's values
    (or, for a tile no job lists, the defaults in ``s2_assets.jobs.options``).

    Attributes:
        max_cloud: Highest cloud cover in percent, inclusive; unknown cover is kept.
        pb_min: Lowest processing baseline (e.g. 4.0), inclusive.
        pb_max: Highest processing baseline, inclusive.
        filter_max_pb: Keep only the newest baseline of each acquisition.
        provider: Only this provider's products.
    """

    max_cloud: float | None = None
    pb_min: float | None = None
    pb_max: float | None = None
    filter_max_pb: bool | None = None
    provider: str | None = None

    def apply(self, options: TaskOptions) -> TaskOptions:
        overrides = {k: v for k, v in self.model_dump().items() if v is not None}
        return replace(options, **overrides)


def partition_metadata(
    held: list[LibraryProduct],
    fetched: list[str],
    computed: list[str],
    offline: list[str],
    quarantined: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "products": len(held),
        "product_ids": dg.MetadataValue.json([p.id for p in held]),
        "paths": dg.MetadataValue.json([str(p.path) for p in held]),
        "baselines": dg.MetadataValue.json(sorted({p.name.baseline or "" for p in held})),
        "bytes": sum(directory_bytes(p.path) for p in held),
        "fetched_now": dg.MetadataValue.json(fetched),
        "computed_now": dg.MetadataValue.json(computed),
        "offline": dg.MetadataValue.json(offline),
        "provenance": dg.MetadataValue.json(metadata_for([p.path for p in held])),
        "quarantined": dg.MetadataValue.json(quarantined or []),
    }


def record_quarantine(
    context: dg.AssetExecutionContext, raw_key: str, entries: list[dict[str, str]]
) -> None:
    """An observation on the partition naming each product not published and why.

    Written straight to the instance: events a step logs are dropped when the step then
    fails (as it does, to report the failure), and this one must stay on the partition.
    """
    context.instance.report_runless_asset_event(
        dg.AssetObservation(
            asset_key=context.asset_key,
            partition=raw_key,
            description=f"{len(entries)} product(s) failed verification and were quarantined",
            metadata={
                "quarantined": dg.MetadataValue.json(entries),
                "run_id": context.run.run_id,
            },
        )
    )


def _finish(
    context: dg.AssetExecutionContext, level: str, options: TaskOptions, outcome: Outcome
) -> None:
    """Offline products: retry the step as the job's ``tries``/``sleep`` say, then report."""
    if outcome.offline and context.retry_number < options.tries - 1:
        raise dg.RetryRequested(
            max_retries=options.tries - 1, seconds_to_wait=options.sleep_minutes * 60
        )
    if outcome.failures:
        raise dg.Failure(
            description=f"{len(outcome.failures)} {level} product(s) failed; the others are in the library",
            metadata={"failures": dg.MetadataValue.json(outcome.failures)},
        )


def build_product_asset(
    level: str, partitions_def: dg.MultiPartitionsDefinition, acquisitions: dg.AssetsDefinition
) -> dg.AssetsDefinition:
    """The ``l1c`` or ``l2a`` asset."""
    compute = level == "L2A"

    def body(
        context: dg.AssetExecutionContext,
        config: SelectionConfig,
        lib: Library,
        providers: ProvidersResource,
        sen2cor: Sen2CorResource | None,
    ) -> dg.MaterializeResult:
        options_of = RunOptions(context, lib)
        tables: dict[str, dict[object, list[ProductRecord]]] = {}
        disks: dict[str, TileDisk] = {}
        failing: dict[str, dict[tuple[str, str], FailureRecord]] = {}
        now = datetime.now(UTC)
        outcome = Outcome()
        last = TaskOptions()
        for raw_key in context.partition_keys:
            key = TileDate.parse(raw_key)
            last = options = config.apply(options_of(key))
            if key.tile not in tables:
                by_day: dict[object, list[ProductRecord]] = {}
                for r in catalogue.read_table(lib.acquisitions_path(key.tile)):
                    by_day.setdefault(r.date, []).append(r)
                tables[key.tile] = by_day
                disks[key.tile] = TileDisk(lib, key.tile)
                failing[key.tile] = read_failures(lib.logs_dir, key.tile)
            quarantined_before = len(outcome.quarantined)
            listed = tables[key.tile].get(key.date, [])
            rows = [with_cloud_cover(r, lib) for r in listed]
            catalogue.learn_cloud_cover(
                lib.acquisitions_path(key.tile),
                {
                    r.product_id: r.cloud_cover
                    for r, was in zip(rows, listed, strict=True)
                    if r.cloud_cover is not None and was.cloud_cover is None
                },
            )
            # A run no job started (a hand-started backfill) fetches the asset's own level, with
            # the governing task's filters: the asset was asked for by name.
            wants = options
            if options_of.job is None:
                wants = replace(options, download=level.lower())
            missing = {
                (out.location, out.product)
                for out, present in day_outputs(wants, rows, disks[key.tile])
                if not present
                and out.stage == level.lower()
                and not (
                    # A job's run skips products backing off since before it started (its
                    # own retries, tries/sleep, still try them).
                    options_of.job is not None
                    and (f := failing[key.tile].get((out.stage, out.product))) is not None
                    and f.backing_off(now)
                    and f.last.timestamp() < options_of.started
                )
            }
            wanted_ids = {product for _, product in missing}
            to_fetch = [r for r in rows if r.level == level and r.product_id in wanted_ids]
            fetched, offline = fetch_products(
                context, to_fetch, lib, providers, outcome, options_of.run
            )
            computed = (
                compute_l2a(
                    context,
                    key,
                    options,
                    lib,
                    sen2cor,
                    outcome,
                    {product for location, product in missing if not location},
                    options_of.run,
                )
                if compute and sen2cor is not None and options.compute_l2a
                else []
            )
            held = lib.products(level, key.tile, key.date)
            if compute and options.copy_sideproducts:
                for product in held:
                    copy_side_products(product.path, lib.mask_dir(key.tile, product.id))
            quarantined = outcome.quarantined[quarantined_before:]
            if quarantined:
                record_quarantine(context, raw_key, quarantined)
            if held or fetched or computed or offline or quarantined:
                # Empty days take the run-level defaults below: metadata for one partition
                # costs a lookup of every key of the run's range (quadratic in its length).
                run_metadata.add(
                    context,
                    partition_metadata(held, fetched, computed, offline, quarantined),
                    partition_key=raw_key,
                )
            outcome.offline += offline
            outcome.fetched += len(fetched)
            outcome.computed += len(computed)
            if fetched or computed or offline:
                options_of.write(
                    f"{level} {key}: fetched {fetched}, computed {computed}, offline {offline}"
                )
        _finish(context, level, last, outcome)
        return dg.MaterializeResult(
            metadata={
                # What an empty day records; days with products override it.
                **partition_metadata([], [], [], []),
                "run_partitions": len(context.partition_keys),
                "run_fetched": outcome.fetched,
                "run_computed": outcome.computed,
            }
        )

    decorator = dg.asset(
        name=level.lower(),
        partitions_def=partitions_def,
        deps=[
            dg.AssetDep(
                acquisitions,
                partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                    partition_dimension_name="tile"
                ),
            )
        ],
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool="download",
        group_name="products",
        kinds={"sentinel2", "safe"},
        description=(
            f"The {level} SAFE product(s) of one tile and sensing day, in the library"
            + (": downloaded, or computed from l1c with Sen2Cor." if compute else ".")
        ),
    )
    if not compute:

        @decorator
        def l1c(
            context: dg.AssetExecutionContext,
            config: SelectionConfig,
            library: LibraryResource,
            providers: ProvidersResource,
        ) -> dg.MaterializeResult:
            return body(context, config, library.library(), providers, None)

        return l1c

    @decorator
    def l2a(
        context: dg.AssetExecutionContext,
        config: SelectionConfig,
        library: LibraryResource,
        providers: ProvidersResource,
        sen2cor: Sen2CorResource,
    ) -> dg.MaterializeResult:
        return body(context, config, library.library(), providers, sen2cor)

    return l2a
