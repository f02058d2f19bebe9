"""The one ``Definitions`` of the code location, and the only place resources are bound."""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

from s2_assets.assets.acquisitions import build_acquisitions
from s2_assets.assets.derived import build_cloudmask_asset, build_indices_asset
from s2_assets.assets.products import build_product_asset
from s2_assets.jobs.automation import (
    build_broken_job_schedule,
    build_job_schedule,
    build_new_acquisitions_sensor,
)
from s2_assets.jobs.jobfile import jid_from_path, load_jobs
from s2_assets.jobs.staging_sensor import build_staging_sensor
from s2_assets.library import Library
from s2_assets.partitions import tile_date_partitions
from s2_assets.resources.cdse import CdseResource
from s2_assets.resources.chiller import ChillerResource
from s2_assets.resources.library import LibraryResource
from s2_assets.resources.providers import ArchiveResource, ProvidersResource
from s2_assets.resources.sen2cor import Sen2CorInstallation, Sen2CorResource
from s2_assets.settings import Settings


def cdse_resource(settings: Settings) -> CdseResource:
    """CDSE with credentials from ``CDSE_USERNAME``/``CDSE_PASSWORD``, bound as ``EnvVar`` so
    their values never show in the UI or run config. Without them, searching still works (the
    catalogue is public) and a download fails saying which variables to set."""
    if not settings.cdse_credentials:
        return CdseResource()
    return CdseResource(username=dg.EnvVar("CDSE_USERNAME"), password=dg.EnvVar("CDSE_PASSWORD"))


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything Dagster shows, built from ``settings``."""
    with warnings.catch_warnings():
        # BackfillPolicy and MultiToSingleDimensionPartitionMapping are "beta" in 1.13 but are
        # exactly what ranged runs over tile x date need; the warning says nothing actionable.
        warnings.simplefilter("ignore", dg.BetaWarning)
        partitions = tile_date_partitions(settings.date_start)
        acquisitions = build_acquisitions(settings.first_day)
        l1c = build_product_asset("L1C", partitions, acquisitions)
        l2a = build_product_asset("L2A", partitions, acquisitions)
        cloudmask = build_cloudmask_asset(partitions, l2a)
        indices = build_indices_asset(partitions, l2a, cloudmask)
    jobs, errors = load_jobs(Library(settings.data_home).jobs_dir)
    automation: list[dg.ScheduleDefinition] = []
    asset_jobs = []
    for job in jobs:
        asset_job, schedule = build_job_schedule(job, acquisitions, settings.timezone)
        asset_jobs.append(asset_job)
        automation.append(schedule)
    for error in errors:
        path = Path(str(getattr(error, "path", "job file")))
        automation.append(build_broken_job_schedule(str(path), jid_from_path(path), str(error)))
    product_assets = [l1c, l2a, cloudmask, indices]
    chiller = ChillerResource(url=settings.chiller_url or None)
    # With Chiller, EODC products wait on tape until staging_sensor has them staged.
    staged = frozenset({"eodc"}) if chiller.enabled else frozenset()
    sensors = [build_new_acquisitions_sensor(product_assets, staged_providers=staged)]
    if chiller.enabled:
        sensors.append(build_staging_sensor(product_assets))
    return dg.Definitions(
        assets=[acquisitions, *product_assets],
        jobs=asset_jobs,
        schedules=automation,
        sensors=sensors,
        resources={
            "library": LibraryResource(root=str(settings.data_home)),
            "chiller": chiller,
            "sen2cor": Sen2CorResource(
                installations=[Sen2CorInstallation(path=p) for p in settings.sen2cor_paths]
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
    return build_definitions(Settings.from_env())
