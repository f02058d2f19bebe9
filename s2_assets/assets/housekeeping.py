"""``housekeeping``: a task's remove rules once the products that need the inputs exist,
then the job's ``clean_after`` (sen2chain's library clean) on the tile.

Removed products stop being claimed: the partition of the level that lost them gets a new
materialization event listing what it holds now (``products`` may be 0), what was removed,
by which rule and when. (Dagster's SQLite and Postgres storages cannot wipe single
partitions, and a new event is what the UI shows as the partition's current state.)"""

from datetime import UTC, datetime

import dagster as dg

from s2_assets.assets.run_options import RunOptions
from s2_assets.library.clean import clean_library
from s2_assets.library.removal import plan_removals, remove_product
from s2_assets.partitions import TileDate
from s2_assets.resources.library import LibraryResource


def build_housekeeping_asset(
    partitions_def: dg.MultiPartitionsDefinition, upstream: list[dg.AssetsDefinition]
) -> dg.AssetsDefinition:
    """The ``housekeeping`` asset, downstream of every product asset."""

    @dg.asset(
        partitions_def=partitions_def,
        deps=upstream,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="maintenance",
    )
    def housekeeping(
        context: dg.AssetExecutionContext, library: LibraryResource
    ) -> dg.MaterializeResult:
        """Applies the governing task's remove rules (l1c-new, l1c-all, l2a-new, l2a-all, -ccNN)."""
        lib = library.library()
        options_of = RunOptions(context, lib)
        removed_total = 0
        cleaned_tiles: set[str] = set()
        for raw_key in context.partition_keys:
            key = TileDate.parse(raw_key)
            options = options_of(key)
            removals = plan_removals(lib, key.tile, key.date, options.remove, options_of.run)
            emptied: dict[tuple[str, str], list[str]] = {}
            for removal in removals:
                product = removal.product
                remove_product(lib, product)
                level = product.name.level.lower()
                partition = str(TileDate(key.tile, product.name.date))
                emptied.setdefault((level, partition), []).append(f"{product.id} ({removal.rule})")
                options_of.write(f"removed {product.id} by rule {removal.rule}")
            now = datetime.now(UTC).isoformat(timespec="seconds")
            for (level, partition), ids in sorted(emptied.items()):
                day = TileDate.parse(partition)
                held = lib.products(level.upper(), day.tile, day.date)
                context.log_event(
                    dg.AssetMaterialization(
                        asset_key=level,
                        partition=partition,
                        description=f"products removed by remove rules at {now}",
                        metadata={
                            "products": len(held),
                            "product_ids": dg.MetadataValue.json([p.id for p in held]),
                            "paths": dg.MetadataValue.json([str(p.path) for p in held]),
                            "removed": dg.MetadataValue.json(ids),
                            "removed_at": now,
                        },
                    )
                )
            removed_total += len(removals)
            if options.clean_after and key.tile not in cleaned_tiles:
                cleaned_tiles.add(key.tile)
                report = clean_library(lib, [key.tile], remove=True)
                context.log.info(f"clean_after {key.tile}: {report.summary()}")
                options_of.write(f"clean_after {key.tile}: {report.summary()}")
            context.add_asset_metadata(
                {
                    "rules": dg.MetadataValue.json([str(r) for r in options.remove]),
                    "removed": dg.MetadataValue.json([r.product.id for r in removals]),
                },
                partition_key=raw_key,
            )
        return dg.MaterializeResult(metadata={"run_removed": removed_total})

    return housekeeping
