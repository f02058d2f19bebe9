"""The one ``Definitions`` of the code location, and the only place resources are bound."""

from __future__ import annotations

import warnings

import dagster as dg

from s2_assets.assets.acquisitions import build_acquisitions
from s2_assets.assets.products import build_product_asset
from s2_assets.partitions import tile_date_partitions
from s2_assets.resources.library import LibraryResource
from s2_assets.resources.providers import ArchiveResource, ProvidersResource
from s2_assets.settings import Settings


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
    return dg.Definitions(
        assets=[acquisitions, l1c, l2a],
        resources={
            "library": LibraryResource(root=str(settings.data_home)),
            "providers": ProvidersResource(
                default=settings.default_provider,
                archive=ArchiveResource(root=settings.archive_root),
            ),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by ``dagster dev`` / the webserver / the daemon (settings from the environment)."""
    return build_definitions(Settings.from_env())
