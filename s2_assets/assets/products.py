"""``l1c`` and ``l2a``: the SAFE products of a (tile, date), fetched or computed.

Both come from one factory. A run may cover many partitions (ranged backfill runs); each
partition gets its own metadata. A (tile, date) with no product is recorded as checked with
``products: 0``: Dagster materializes every day of a ranged run, and one run per acquisition
day would cost seconds of start-up each.

What to fetch or compute comes from the planner (:mod:`s2_assets.jobs.planner`) applied to
the partition: only products the governing task wants and the library lacks, so a ranged run
that spans days already done fetches nothing again (nor an L2A a remove rule deleted after
its masks and indices were made). ``download = l2a`` with ``compute_l2a``: the L2A is
downloaded, and Sen2Cor runs only for acquisitions without an L2A in the catalogue whose L1C
is in the library. A product that fails is written to the failure ledger (its last error,
for the back-off and ``s2-assets jobs status``) and cleared when it succeeds; a run started
by a job skips products still backing off.

The provenance of each product fetched or computed records the run (``S2_ASSETS_RUN``: the
backfill id, else the run id), which is what the ``-new`` remove rules mean by "this run".
"""

from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import dagster as dg

from s2_assets.assets import run_metadata
from s2_assets.errors import (
    CorruptProductError,
    MetadataError,
    ProductOfflineError,
    S2AssetsError,
)
from s2_assets.jobs.jobfile import load_jobs
from s2_assets.jobs.joblog import JobLog
from s2_assets.jobs.options import JOB_TAG, TaskOptions, options_for
from s2_assets.jobs.tile_disk import TileDisk
from s2_assets.jobs.wanted import day_outputs
from s2_assets.library import acquisitions as catalogue
from s2_assets.library.failures import FailureRecord, clear_failure, read_failures, record_failure
from s2_assets.library.provenance import (
    RUN_TAG,
    for_delivery,
    metadata_for,
    processing_version,
    read_record,
    write_record,
)
from s2_assets.library.removal import COMPUTED_PROVIDER
from s2_assets.library.tree import Library, LibraryProduct, directory_bytes
from s2_assets.partitions import TileDate
from s2_assets.products import ProductName
from s2_assets.providers.archive import read_zip_cloud_cover
from s2_assets.providers.base import ProductRecord
from s2_assets.resources.library import LibraryResource
from s2_assets.resources.providers import ProvidersResource
from s2_assets.resources.sen2cor import Sen2CorResource
from s2_assets.sen2cor.sideproducts import copy_side_products
from s2_assets.sen2cor.slots import slot


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


class RunOptions:
    """Options per (tile, date) for one run: job files read once, task looked up per key,
    and sen2chain's per-run log file when the run's job has ``logs = True``."""

    def __init__(self, context: dg.AssetExecutionContext, lib: Library) -> None:
        self.jobs, errors = load_jobs(lib.jobs_dir)
        for error in errors:
            context.log.warning(str(error))
        self.broken = errors
        self.job = context.run.tags.get(JOB_TAG)
        # What the -new remove rules mean by "this run": the backfill, else the run.
        self.run = context.run.tags.get("dagster/backfill") or context.run.run_id
        self.today = datetime.now(UTC).date()
        job_file = next((j for j in self.jobs if j.jid == self.job), None)
        self.log: JobLog | None = None
        self.started = _run_start(context)
        if job_file is not None and job_file.settings.logs:
            started = datetime.fromtimestamp(self.started, UTC)
            self.log = JobLog(lib.logs_dir, job_file.jid, context.run.run_id, started)

    def __call__(self, key: TileDate) -> TaskOptions:
        """The governing task's options; a partition only a broken job file governs fails.

        Raises:
            dg.Failure: naming the broken file's error (its tiles never take the defaults).
        """
        options = options_for(self.jobs, key.tile, key.date, today=self.today, job=self.job)
        if options.job is None:
            for error in self.broken:
                path = getattr(error, "path", None)
                if broken_file_governs(error, key.tile, self.job):
                    raise dg.Failure(
                        f"{key}: governed by the broken job file {path}, not run with defaults: "
                        f"{error}"
                    )
        return options

    def write(self, message: str) -> None:
        if self.log is not None:
            self.log.write(message)


def broken_file_governs(error: Exception, tile: str, job: str | None) -> bool:
    """Whether the broken job file of ``error`` is the one asked for (``job``) or, for a run no
    job started, lists ``tile`` (its text names it outside comments)."""
    path = getattr(error, "path", None)
    if path is None:
        return False
    from s2_assets.jobs.jobfile import jid_from_path, split_comment

    if job is not None:
        return jid_from_path(path) == job
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(tile in split_comment(line).upper() for line in text.splitlines())


def _run_start(context: dg.AssetExecutionContext) -> float:
    record = context.instance.get_run_record_by_id(context.run.run_id)
    start = record.start_time if record is not None else None
    return start or datetime.now(UTC).timestamp()


def acquire(
    record: ProductRecord, lib: Library, providers: ProvidersResource, run: str = ""
) -> bool:
    """Put ``record`` in the library unless it is there; True when it was fetched now.

    ``run`` (the backfill or run id) goes into the product's provenance."""
    name = record.name
    if lib.has_product(name):
        return False
    provider = providers.get(record.provider)
    with lib.scratch("fetch") as work:
        safe = lib.install_zip(provider.fetch(record, work), name)
    version = processing_version(lib.root)
    delivered = for_delivery(
        record.product_id,
        level=record.level,
        provider=record.provider,
        checksums=record.checksums,
        processing_version=version,
    )
    write_record(safe, replace(delivered, extra={RUN_TAG: run}) if run else delivered)
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


def quarantine_entry(error: CorruptProductError) -> dict[str, str]:
    """What the partition's metadata says about a product that failed verification."""
    return {
        "product": error.product_id,
        "why": "; ".join(error.problems[:5]),
        "folder": str(error.quarantine),
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


class _Outcome:
    """What happened to one run's products, partition by partition."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.offline: list[str] = []
        self.quarantined: list[dict[str, str]] = []
        self.fetched = 0
        self.computed = 0


def _fetch(
    context: dg.AssetExecutionContext,
    rows: list[ProductRecord],
    lib: Library,
    providers: ProvidersResource,
    outcome: _Outcome,
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
        except CorruptProductError as exc:
            outcome.quarantined.append(quarantine_entry(exc))
            outcome.failures.append(f"{record.product_id}: {exc}")
            context.log.error(f"{record.product_id}: {exc}")
            record_failure(lib.logs_dir, record.tile, stage, record.product_id, str(exc))
        except S2AssetsError as exc:
            outcome.failures.append(f"{record.product_id}: {exc}")
            context.log.error(f"{record.product_id}: {exc}")
            record_failure(lib.logs_dir, record.tile, stage, record.product_id, str(exc))
    return fetched, offline


def _compute(
    context: dg.AssetExecutionContext,
    key: TileDate,
    options: TaskOptions,
    lib: Library,
    sen2cor: Sen2CorResource,
    outcome: _Outcome,
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
        except CorruptProductError as exc:
            outcome.quarantined.append(quarantine_entry(exc))
            outcome.failures.append(f"{l1c.id}: {exc}")
            context.log.error(f"Sen2Cor on {l1c.id}: {exc}")
            record_failure(lib.logs_dir, key.tile, "l2a", l1c.id, str(exc))
            continue
        except S2AssetsError as exc:
            outcome.failures.append(f"{l1c.id}: {exc}")
            context.log.error(f"Sen2Cor on {l1c.id}: {exc}")
            record_failure(lib.logs_dir, key.tile, "l2a", l1c.id, str(exc))
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


def _finish(
    context: dg.AssetExecutionContext, level: str, options: TaskOptions, outcome: _Outcome
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
        outcome = _Outcome()
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
            fetched, offline = _fetch(context, to_fetch, lib, providers, outcome, options_of.run)
            computed = (
                _compute(
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
