"""The one ``Definitions`` of the code location, and the only place resources are bound."""

from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from s2_assets.assets.acquisitions import build_acquisitions
from s2_assets.assets.checks import build_checks
from s2_assets.assets.composites import (
    build_composite_asset,
    build_composite_automation_sensor,
)
from s2_assets.assets.derived import build_cloudmask_asset, build_indices_asset
from s2_assets.assets.housekeeping import build_housekeeping_asset
from s2_assets.assets.maintenance import library_clean_job
from s2_assets.assets.outputs import build_catalog_asset, build_timeseries_asset
from s2_assets.assets.products import build_product_asset
from s2_assets.errors import S2AssetsError
from s2_assets.jobs.automation import build_broken_job_schedule, build_job_schedule
from s2_assets.jobs.extraction import build_extraction_automation
from s2_assets.jobs.jobfile import RESERVED_JIDS, dagster_name, jid_from_path, load_jobs
from s2_assets.jobs.model import JobSettings
from s2_assets.jobs.reconcile import build_new_acquisitions_sensor
from s2_assets.jobs.staging_sensor import build_staging_sensor
from s2_assets.library.tree import Library
from s2_assets.partitions import tile_date_partitions, tile_month_partitions
from s2_assets.providers.base import PROVIDER_NAMES
from s2_assets.resources.cdse import CdseResource
from s2_assets.resources.chiller import ChillerResource
from s2_assets.resources.library import LibraryResource
from s2_assets.resources.providers import ArchiveResource, ProvidersResource
from s2_assets.resources.sen2cor import Sen2CorInstallation, Sen2CorResource
from s2_assets.settings import RESOURCE_ENV, Settings


def env_fields(settings: Settings, resource: str) -> dict[str, Any]:
    """The fields of ``resource`` set by environment variables (``RESOURCE_ENV``), bound as
    ``dg.EnvVar`` so each run reads them and the UI shows only their names. Unset variables
    are not bound: the resource's own default applies."""
    return {
        spec.field: dg.EnvVar.int(name) if spec.kind == "int" else dg.EnvVar(name)
        for name, spec in RESOURCE_ENV.items()
        if spec.resource == resource and name in settings.resource_env
    }


def cdse_resource(settings: Settings) -> CdseResource:
    """CDSE with credentials from ``CDSE_USERNAME``/``CDSE_PASSWORD``, bound as ``EnvVar`` so
    their values never show in the UI or run config. Without them, searching still works (the
    catalogue is public) and a download fails saying which variables to set. Endpoint URLs
    (a mirror, a test instance) and the login cool-down come from ``S2_CDSE_*``."""
    fields = env_fields(settings, "cop_dataspace")
    if settings.cdse_trusted_hosts:
        fields["trusted_hosts"] = [*CdseResource().trusted_hosts, *settings.cdse_trusted_hosts]
    if settings.cdse_credentials:
        fields.update(username=dg.EnvVar("CDSE_USERNAME"), password=dg.EnvVar("CDSE_PASSWORD"))
    return CdseResource(**fields)


class ExecutorConfigError(S2AssetsError, ValueError):
    """The file ``S2_EXECUTOR`` names cannot give an executor."""


# What an S2_EXECUTOR file may name; each needs its integration installed (pip install dagster-k8s).
CLUSTER_EXECUTORS = {
    "k8s": ("dagster_k8s", "k8s_job_executor"),
    "celery": ("dagster_celery", "celery_executor"),
    "dask": ("dagster_dask", "dask_executor"),
}


def local_executor(max_concurrent: int) -> dg.ExecutorDefinition:
    """Dagster's default executor: run config picks ``in_process`` or ``multiprocess``; an unset
    ``max_concurrent`` is the job files' ``nb_proc`` rather than the CPU count. With one
    worker the default is ``in_process``: a process per step would run the steps one by one
    all the same, and each costs seconds of start-up (docs/operations.md, "Executors")."""
    base = dg.multi_or_in_process_executor

    def fill_default(config: dict[str, Any]) -> dict[str, Any]:
        if "multiprocess" not in config or config["multiprocess"].get("max_concurrent"):
            return config
        return {"multiprocess": {**config["multiprocess"], "max_concurrent": max_concurrent}}

    default: dict[str, Any] = {"in_process": {}} if max_concurrent <= 1 else {"multiprocess": {}}
    schema = dg.Field(base.config_schema.as_field().config_type, default_value=default)
    return base.configured(fill_default, config_schema=schema)


def cluster_executor(path: str) -> dg.ExecutorDefinition:
    """The executor an ``S2_EXECUTOR`` YAML file names (``executor: k8s|celery|dask``) with its
    ``config:``, checked now so a bad file fails the code location, not every run.

    Raises:
        ExecutorConfigError: naming the file, and the valid executors or the config problem.
    """
    try:
        spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ExecutorConfigError(f"S2_EXECUTOR={path}: cannot read it: {exc}") from exc
    name = spec.get("executor") if isinstance(spec, dict) else None
    if name not in CLUSTER_EXECUTORS:
        raise ExecutorConfigError(
            f"S2_EXECUTOR={path}: executor: {name!r} is not one of {', '.join(CLUSTER_EXECUTORS)}"
        )
    module, attribute = CLUSTER_EXECUTORS[name]
    try:
        executor: dg.ExecutorDefinition = getattr(importlib.import_module(module), attribute)
    except ImportError as exc:
        package = module.replace("_", "-")
        raise ExecutorConfigError(
            f"S2_EXECUTOR={path}: {name} needs `pip install {package}`"
        ) from exc
    config = spec.get("config") or {}

    @dg.op
    def probe() -> None:
        """Never run: only lets Dagster check the executor config now."""

    @dg.job(executor_def=executor)
    def executor_probe() -> None:
        probe()

    try:
        dg.validate_run_config(executor_probe, {"execution": {"config": config}})
    except dg.DagsterInvalidConfigError as exc:
        raise ExecutorConfigError(f"S2_EXECUTOR={path}: bad {name} config: {exc}") from exc
    return executor.configured(config, name=name)


def build_definitions(
    settings: Settings, executor: dg.ExecutorDefinition | None = None
) -> dg.Definitions:
    """Everything Dagster shows, built from ``settings``; ``executor`` replaces the local one."""
    with warnings.catch_warnings():
        # BackfillPolicy and MultiToSingleDimensionPartitionMapping are "beta" in 1.13 but are
        # exactly what ranged runs over tile x date need; the warning says nothing actionable.
        warnings.simplefilter("ignore", dg.BetaWarning)
        partitions = tile_date_partitions(settings.date_start, settings.date_end)
        acquisitions = build_acquisitions(settings.first_day)
        l1c = build_product_asset("L1C", partitions, acquisitions)
        l2a = build_product_asset("L2A", partitions, acquisitions)
        cloudmask = build_cloudmask_asset(partitions, l2a)
        indices = build_indices_asset(partitions, l2a, cloudmask)
        housekeeping = build_housekeeping_asset(partitions, [l1c, l2a, cloudmask, indices])
        catalog = build_catalog_asset([l2a, cloudmask, indices])
        timeseries = build_timeseries_asset([cloudmask, indices])
        composite = build_composite_asset(tile_month_partitions(settings.date_start), indices)
    jobs, errors = load_jobs(Library(settings.data_home).jobs_dir, providers=PROVIDER_NAMES)
    cpus = os.cpu_count() or 1
    workers = max((job.settings.workers(cpus) for job in jobs), default=JobSettings().workers(cpus))
    automation: list[dg.ScheduleDefinition] = []
    asset_jobs = []
    taken = set(RESERVED_JIDS)
    for job in jobs:
        asset_job, schedule = build_job_schedule(
            job, acquisitions, settings.timezone, PROVIDER_NAMES
        )
        asset_jobs.append(asset_job)
        automation.append(schedule)
        taken.add(job.jid)
    for error in errors:
        path = Path(str(getattr(error, "path", "job file")))
        # A broken file's own name may collide (job_my-job.cfg beside job_my_job.cfg): give
        # it a free one, so one bad file can never take the code location down.
        name = base = dagster_name(jid_from_path(path))
        number = 1
        while name in taken:
            number += 1
            name = f"{base}_{number}"
        taken.add(name)
        automation.append(build_broken_job_schedule(str(path), name, str(error)))
    # sen2chain's extraction job files (config/jobs_extr): timeseries on their own schedules.
    extraction_jobs, extraction_schedules = build_extraction_automation(
        settings.data_home,
        timeseries,
        settings.timezone,
        taken={f"{name}_job" for name in taken} | {"library_clean_job"},
    )
    asset_jobs += extraction_jobs
    automation += extraction_schedules
    product_assets = [l1c, l2a, cloudmask, indices, housekeeping]
    chiller = ChillerResource(url=settings.chiller_url or None, **env_fields(settings, "chiller"))
    # With Chiller, EODC products wait on tape until staging_sensor has them staged. Without,
    # staging_sensor is still there (it skips, saying why), so that its name always resolves
    # (e.g. `dagster sensor cursor staging_sensor --delete`).
    staged = frozenset({"eodc"}) if settings.chiller_url else frozenset()
    sensors = [
        build_new_acquisitions_sensor(
            product_assets, staged_providers=staged, providers=PROVIDER_NAMES
        ),
        build_staging_sensor(product_assets),
        build_composite_automation_sensor(composite),
    ]
    return dg.Definitions(
        assets=[acquisitions, *product_assets, catalog, timeseries, composite],
        asset_checks=build_checks(l1c, l2a, cloudmask, indices),
        executor=executor or local_executor(workers),
        jobs=[*asset_jobs, library_clean_job],
        schedules=automation,
        sensors=sensors,
        resources={
            "library": LibraryResource(root=str(settings.data_home)),
            "chiller": chiller,
            "sen2cor": Sen2CorResource(
                installations=[Sen2CorInstallation(path=p) for p in settings.sen2cor_paths],
                **env_fields(settings, "sen2cor"),
            ),
            "providers": ProvidersResource(
                default=settings.default_provider,
                archive=ArchiveResource(root=settings.archive_root),
                eodc=ArchiveResource(root=settings.eodc_root, read_metadata=False),
                cop_dataspace=cdse_resource(settings),
            ),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by ``dagster dev`` / the webserver / the daemon (settings from the environment)."""
    executor_file = os.environ.get("S2_EXECUTOR", "")
    return build_definitions(
        Settings.from_env(), cluster_executor(executor_file) if executor_file else None
    )
