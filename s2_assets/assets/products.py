"""``l1c`` and ``l2a``: the SAFE products of a (tile, date), fetched from their provider.

Both come from one factory: they differ only by level. A run may cover many partitions
(ranged backfill runs); each partition gets its own metadata. A (tile, date) with no product
in the catalogue is recorded as checked with ``products: 0``: Dagster materializes every day
of a ranged run, and one run per acquisition day would cost seconds of start-up each.
"""

from dataclasses import replace
from datetime import UTC, datetime

import dagster as dg

from s2_assets import catalogue
from s2_assets.errors import ProductOfflineError, S2AssetsError
from s2_assets.jobs.jobfile import load_jobs
from s2_assets.library import Library, directory_bytes
from s2_assets.options import JOB_TAG, TaskOptions, options_for
from s2_assets.partitions import TileDate
from s2_assets.providers.base import ProductRecord
from s2_assets.resources.library import LibraryResource
from s2_assets.resources.providers import ProvidersResource


class SelectionConfig(dg.Config):
    """Overrides of the governing job task's filters; unset fields keep the task's values
    (or, for a tile no job lists, the defaults in ``s2_assets.options``).

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


class RunOptions:
    """Options per (tile, date) for one run: job files read once, task looked up per key."""

    def __init__(self, context: dg.AssetExecutionContext, lib: Library) -> None:
        self.jobs, errors = load_jobs(lib.jobs_dir)
        for error in errors:
            context.log.warning(str(error))
        self.job = context.run.tags.get(JOB_TAG)
        self.today = datetime.now(UTC).date()

    def __call__(self, key: TileDate) -> TaskOptions:
        return options_for(self.jobs, key.tile, key.date, today=self.today, job=self.job)


def acquire(record: ProductRecord, lib: Library, providers: ProvidersResource) -> bool:
    """Put ``record`` in the library unless it is there; True when it was fetched now."""
    name = record.name
    if lib.has_product(name):
        return False
    provider = providers.get(record.provider)
    with lib.scratch("fetch") as work:
        lib.install_zip(provider.fetch(record, work), name)
    return True


def partition_metadata(
    lib: Library, level: str, key: TileDate, fetched: list[str], offline: list[str]
) -> dict[str, object]:
    held = lib.products(level, key.tile, key.date)
    return {
        "products": len(held),
        "product_ids": dg.MetadataValue.json([p.id for p in held]),
        "paths": dg.MetadataValue.json([str(p.path) for p in held]),
        "baselines": dg.MetadataValue.json(sorted({p.name.baseline or "" for p in held})),
        "bytes": sum(directory_bytes(p.path) for p in held),
        "fetched_now": dg.MetadataValue.json(fetched),
        "offline": dg.MetadataValue.json(offline),
    }


def build_product_asset(
    level: str, partitions_def: dg.MultiPartitionsDefinition, acquisitions: dg.AssetsDefinition
) -> dg.AssetsDefinition:
    """The ``l1c`` or ``l2a`` asset."""

    @dg.asset(
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
        description=f"The {level} SAFE product(s) of one tile and sensing day, in the library.",
    )
    def product_asset(
        context: dg.AssetExecutionContext,
        config: SelectionConfig,
        library: LibraryResource,
        providers: ProvidersResource,
    ) -> dg.MaterializeResult:
        lib = library.library()
        options_of = RunOptions(context, lib)
        tables: dict[str, list[ProductRecord]] = {}
        failures: list[str] = []
        counts = {"partitions": 0, "products": 0, "fetched": 0}
        for raw_key in context.partition_keys:
            key = TileDate.parse(raw_key)
            if key.tile not in tables:
                tables[key.tile] = catalogue.read_table(lib.acquisitions_path(key.tile))
            rows = catalogue.select(tables[key.tile], level=level, day=key.date)
            fetched, offline = [], []
            for record in config.apply(options_of(key)).select(rows):
                try:
                    if acquire(record, lib, providers):
                        fetched.append(record.product_id)
                except ProductOfflineError as exc:
                    offline.append(record.product_id)
                    context.log.warning(str(exc))
                except S2AssetsError as exc:
                    failures.append(f"{record.product_id}: {exc}")
                    context.log.error(f"{record.product_id}: {exc}")
            metadata = partition_metadata(lib, level, key, fetched, offline)
            context.add_asset_metadata(metadata, partition_key=raw_key)
            counts["partitions"] += 1
            counts["products"] += int(str(metadata["products"]))
            counts["fetched"] += len(fetched)
        if failures:
            raise dg.Failure(
                description=f"{len(failures)} {level} product(s) failed; the others are in the library",
                metadata={"failures": dg.MetadataValue.json(failures)},
            )
        return dg.MaterializeResult(metadata=counts)

    return product_asset
