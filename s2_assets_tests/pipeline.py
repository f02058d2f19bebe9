"""The code location on a temporary Dagster instance, run the way the demo and backfills run it:
one ``acquisitions`` run per tile, then ranged runs over a tile's days. Shared by the
pipeline and derived-asset tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg

from s2_assets.definitions import build_definitions
from s2_assets.library.tree import Library
from s2_assets.settings import Settings

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


class Pipeline:
    """The code location on ``instance`` over the library at ``library`` and the product zips of
    ``archive``; ``product_config`` goes to the ``l1c`` and ``l2a`` ops of :meth:`products`."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        library: Path,
        archive: Path,
        *,
        product_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.instance = instance
        self.library = Library(library)
        self.product_config = dict(product_config or {})
        settings = Settings(data_home=library, archive_root=str(archive), date_start="2022-01-01")
        self.job = build_definitions(settings).resolve_implicit_global_asset_job_def()

    def acquisitions(self, tile: str, *, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        return self.job.execute_in_process(
            instance=self.instance,
            asset_selection=[dg.AssetKey("acquisitions")],
            partition_key=tile,
            run_config={"ops": {"acquisitions": {"config": {"start": "2022-01-01"}}}},
            raise_on_error=raise_on_error,
        )

    def register(self, tile: str) -> None:
        """Add ``tile`` to the instance's tiles and build its catalogue."""
        self.instance.add_dynamic_partitions("tiles", [tile])
        self.acquisitions(tile)

    def ranged(
        self,
        tile: str,
        first: date | str,
        last: date | str,
        assets: Iterable[str],
        *,
        run_config: Mapping[str, Any] | None = None,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        """``assets`` for the days ``first..last`` of ``tile`` as one ranged run."""
        return self.job.execute_in_process(
            instance=self.instance,
            asset_selection=[dg.AssetKey(a) for a in assets],
            tags={RANGE_START: f"{first}|{tile}", RANGE_END: f"{last}|{tile}"},
            run_config=dict(run_config or {}),
            raise_on_error=raise_on_error,
        )

    def products(
        self,
        tile: str,
        first: date,
        last: date,
        *,
        raise_on_error: bool = True,
        **selection: Any,
    ) -> dg.ExecuteInProcessResult:
        """``l1c`` and ``l2a`` for ``first..last`` of ``tile`` as one ranged run."""
        config = {**self.product_config, **selection}
        return self.ranged(
            tile,
            first,
            last,
            ("l1c", "l2a"),
            run_config={"ops": {op: {"config": config} for op in ("l1c", "l2a")}},
            raise_on_error=raise_on_error,
        )
