"""Fetching and computing one day's products into the library, for the ``l1c``/``l2a`` assets.

Fetching puts a catalogue row's product in the library with its provenance (the run that
fetched it); computing runs Sen2Cor, within the shared slots, on the day's wanted L1C whose
acquisition has no L2A yet, and publishes its output marked as computed. Each product's
outcome goes to the failure ledger (recorded when it fails, cleared when it succeeds); an
offline product is reported, one that fails verification is quarantined.
"""

from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path

import dagster as dg

from s2_assets.assets.product_failures import product_failed
from s2_assets.errors import (
    CorruptProductError,
    MetadataError,
    ProductOfflineError,
    S2AssetsError,
)
from s2_assets.jobs.options import TaskOptions
from s2_assets.library.failures import clear_failure, record_failure
from s2_assets.library.provenance import (
    RUN_TAG,
    for_delivery,
    processing_version,
    read_record,
    write_record,
)
from s2_assets.library.removal import COMPUTED_PROVIDER
from s2_assets.library.tree import Library
from s2_assets.partitions import TileDate
from s2_assets.products import ProductName
from s2_assets.providers.archive import read_zip_cloud_cover
from s2_assets.providers.base import ProductRecord
from s2_assets.resources.providers import ProvidersResource
from s2_assets.resources.sen2cor import Sen2CorResource
from s2_assets.sen2cor.slots import slot


def acquire(
    record: ProductRecord, lib: Library, providers: ProvidersResource, run: str = ""
) -> bool:
    """Put ``record`` in the library unless it is there; True when it was fetched now.

    ``run`` (the backfill or run id) goes into the product's provenance."""
    name = record.name
    if lib.has_product(name):
        return False
    provider = providers.get(record.provider)
    delivered = for_delivery(
        record.product_id,
        level=record.level,
        provider=record.provider,
        checksums=record.checksums,
        processing_version=processing_version(lib.root),
    )
    with lib.scratch("fetch") as work:
        # The record goes in before the SAFE is published: a SAFE in the library is complete.
        lib.install_zip(
            provider.fetch(record, work),
            name,
            record=replace(delivered, extra={RUN_TAG: run}) if run else delivered,
        )
    return True


def with_cloud_cover(record: ProductRecord, lib: Library) -> ProductRecord:
    """``record`` with its cloud cover read from its zip when the catalogue does not know it.

    EODC's rows come without cloud cover (reading a file on tape would recall it), so the
    task's cloud limit can only apply once the zip is staged and readable. Products already
    in the library, remote ones and unreadable zips are left as they are (fetching reports
    an unreadable zip).
    """
    path = Path(record.location)
    if record.cloud_cover is not None or lib.has_product(record.name) or not path.is_file():
        return record
    try:
        return replace(record, cloud_cover=read_zip_cloud_cover(path, record.name))
    except MetadataError:
        return record


def acquisition(name: ProductName) -> tuple[str, datetime, int, str | None]:
    """What an L1C and the L2A made from it (or downloaded for it) have in common."""
    return (name.mission, name.sensing, name.relative_orbit, name.tile)


def quarantine_entry(error: CorruptProductError) -> dict[str, str]:
    """What the partition's metadata says about a product that failed verification."""
    return {
        "product": error.product_id,
        "why": "; ".join(error.problems[:5]),
        "folder": str(error.quarantine),
    }


class Outcome:
    """What happened to one run's products, partition by partition."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.offline: list[str] = []
        self.quarantined: list[dict[str, str]] = []
        self.fetched = 0
        self.computed = 0


def fetch_products(
    context: dg.AssetExecutionContext,
    rows: list[ProductRecord],
    lib: Library,
    providers: ProvidersResource,
    outcome: Outcome,
    run: str,
) -> tuple[list[str], list[str]]:
    fetched, offline = [], []
    for record in rows:
        stage = record.level.lower()
        try:
            if acquire(record, lib, providers, run):
                fetched.append(record.product_id)
            clear_failure(lib.logs_dir, record.tile, stage, record.product_id)
        except ProductOfflineError as exc:
            offline.append(record.product_id)
            context.log.warning(str(exc))
            record_failure(lib.logs_dir, record.tile, stage, record.product_id, str(exc))
        except S2AssetsError as exc:
            _failed(context, lib, outcome, exc, tile=record.tile, stage=stage,
                    product_id=record.product_id)  # fmt: skip
    return fetched, offline


def compute_l2a(
    context: dg.AssetExecutionContext,
    key: TileDate,
    options: TaskOptions,
    lib: Library,
    sen2cor: Sen2CorResource,
    outcome: Outcome,
    wanted: set[str],
    run: str,
) -> list[str]:
    """Sen2Cor for the ``wanted`` L1C of the day whose acquisition has no L2A yet."""
    have = {acquisition(p.name) for p in lib.products("L2A", key.tile, key.date)}
    computed = []
    for l1c in lib.products("L1C", key.tile, key.date):
        if acquisition(l1c.name) in have or l1c.id not in wanted:
            continue
        limit = min(options.nb_proc, sen2cor.slots())
        try:
            with (
                slot(
                    lib.temp_dir / "sen2cor-slots",
                    limit,
                    on_wait=partial(context.log.info, f"waiting for one of {limit} Sen2Cor slots"),
                ) as held,
                lib.scratch("sen2cor") as scratch,
            ):
                # Sen2Cor inherits the slot's lock: if this worker is killed, the slot stays
                # taken until Sen2Cor is gone too.
                safe = sen2cor.run(l1c.path, scratch, hold_fds=(held.fd,))
                mark_computed(safe, run)
                final = lib.publish_product(
                    safe, ProductName.parse(safe.name), where=f"Sen2Cor output for {l1c.id}"
                )
        except S2AssetsError as exc:
            _failed(context, lib, outcome, exc, tile=key.tile, stage="l2a", product_id=l1c.id,
                    doing="Sen2Cor on ")  # fmt: skip
            continue
        clear_failure(lib.logs_dir, key.tile, "l2a", l1c.id)
        computed.append(final.name.removesuffix(".SAFE"))
        have.add(acquisition(l1c.name))
    return computed


def mark_computed(safe: Path, run: str) -> None:
    """Record in the L2A's provenance that Sen2Cor made it here, in ``run``: the fact the
    ``l2a-new`` remove rule acts on (a downloaded L2A carries a record too)."""
    record = read_record(safe)
    if record is None:
        return
    write_record(
        safe,
        replace(
            record, kind="L2A", provider=COMPUTED_PROVIDER, extra={**record.extra, RUN_TAG: run}
        ),
    )


def _failed(
    context: dg.AssetExecutionContext,
    lib: Library,
    outcome: Outcome,
    error: S2AssetsError,
    *,
    tile: str,
    stage: str,
    product_id: str,
    doing: str = "",
) -> None:
    """A product that failed is recorded as any other (:func:`product_failed`); a corrupt
    one is also quarantined."""
    if isinstance(error, CorruptProductError):
        outcome.quarantined.append(quarantine_entry(error))
    product_failed(
        context, lib.logs_dir, outcome.failures, tile=tile, stage=stage, product_id=product_id,
        error=error, doing=doing,
    )  # fmt: skip
