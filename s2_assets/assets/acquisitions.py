"""``acquisitions``: the provider's catalogue of one tile, refreshed over a date window."""

from datetime import UTC, date, datetime

import dagster as dg

from s2_assets.errors import TileIdError
from s2_assets.jobs.jobfile import load_jobs
from s2_assets.jobs.options import JOB_TAG
from s2_assets.library import acquisitions as catalogue
from s2_assets.library.clean import clean_library
from s2_assets.partitions import TILES, TileDate
from s2_assets.products import LEVELS, validate_tile_id
from s2_assets.providers.base import unique_by_id
from s2_assets.resources.library import LibraryResource
from s2_assets.resources.providers import ProvidersResource


class AcquisitionsConfig(dg.Config):
    """Which window to search, and where.

    Attributes:
        start: First sensing day, YYYY-MM-DD; empty means the first day of the partitions.
        end: Last sensing day, YYYY-MM-DD; empty means today (UTC).
        provider: Provider name; empty means the default provider.
        levels: Product levels to list.
    """

    start: str = ""
    end: str = ""
    provider: str = ""
    levels: list[str] = ["L1C", "L2A"]


def parse_day(value: str, *, field: str, default: date) -> date:
    """A YYYY-MM-DD config value, or ``default`` when empty.

    Raises:
        dg.Failure: naming the field and value.
    """
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise dg.Failure(f"{field}: {value!r} is not a date (expected YYYY-MM-DD)") from exc


def build_acquisitions(first_day: date) -> dg.AssetsDefinition:
    """The ``acquisitions`` asset; ``first_day`` is the default start of its search window."""

    @dg.asset(partitions_def=TILES, group_name="catalogue", kinds={"parquet"})
    def acquisitions(
        context: dg.AssetExecutionContext,
        config: AcquisitionsConfig,
        library: LibraryResource,
        providers: ProvidersResource,
    ) -> dg.MaterializeResult:
        """Every L1C/L2A product the provider has for the tile, as a parquet table."""
        start = parse_day(config.start, field="start", default=first_day)
        end = parse_day(config.end, field="end", default=datetime.now(UTC).date())
        if end < start:
            raise dg.Failure(f"empty window: end {end} is before start {start}")
        bad_levels = [level for level in config.levels if level not in LEVELS]
        if bad_levels:
            raise dg.Failure(f"unknown levels {bad_levels}; valid: {', '.join(LEVELS)}")
        provider = providers.get(config.provider)
        lib = library.library()
        job = context.run.tags.get(JOB_TAG)
        jobs, _errors = load_jobs(lib.jobs_dir)
        clean_before = any(j.jid == job and j.settings.clean_before for j in jobs)
        totals = {"products": 0, "new_products": 0}
        new_partitions: set[str] = set()
        for key in context.partition_keys:
            try:
                tile = validate_tile_id(key)
            except TileIdError as exc:
                raise dg.Failure(f"partition {key!r}: {exc}") from exc
            if clean_before:
                # sen2chain's clean_before: repair the tile's library before looking for more.
                cleaned = clean_library(lib, [tile], remove=True)
                context.log.info(f"clean_before {tile}: {cleaned.summary()}")
            found = unique_by_id(
                [r for lvl in config.levels for r in provider.search(tile, lvl, start, end)]
            )
            path = lib.acquisitions_path(tile)
            merged = catalogue.merge(catalogue.read_table(path), found)
            catalogue.write_table(path, merged.records)
            new_keys = sorted({str(TileDate(tile, d)) for d in merged.new_dates})
            new_partitions.update(new_keys)
            totals["products"] += len(merged.records)
            totals["new_products"] += len(merged.new)
            context.add_asset_metadata(
                {
                    "path": dg.MetadataValue.path(str(path)),
                    "products": len(merged.records),
                    "found_in_window": len(found),
                    "new_products": len(merged.new),
                    "new_partitions": dg.MetadataValue.json(new_keys),
                    "new_product_ids": dg.MetadataValue.json(
                        sorted(r.product_id for r in merged.new)
                    ),
                },
                partition_key=key,
            )
            context.log.info(
                f"{tile}: {len(found)} products in {start}..{end}, {len(merged.new)} new"
            )
            if not found:
                root = getattr(provider, "root", None)
                where = f" and that {root} holds its zips" if root else ""
                context.log.warning(
                    f"{tile}: provider {provider.name!r} has no product in {start}..{end}: "
                    f"check the tile id, the window{where}"
                )
        return dg.MaterializeResult(
            metadata={
                **totals,
                "provider": provider.name,
                "window": f"{start}..{end}",
                "new_partition_count": len(new_partitions),
            }
        )

    return acquisitions
