"""Days without a product cost a ranged run no per-partition metadata (issue: at scale).

Dagster checks each ``add_asset_metadata(partition_key=...)`` against every key of the run's
range, looking the tile up in the instance twice, so a ten-year ranged run calling it for each
of its 3,652 days per asset is quadratic. Empty days (most days of a tile's history) take the
run-level metadata instead, which says the same: no product; days with products go through
``run_metadata.add``, which records the same metadata without that check.
"""

from pathlib import Path

import dagster as dg
import pytest

from s2_assets.assets import run_metadata
from s2_assets.definitions import build_definitions
from s2_assets.demo.products import DEMO_PRODUCTS, build_archive
from s2_assets.settings import Settings

RANGE = {
    "dagster/asset_partition_range_start": "2022-01-21|31UFS",
    "dagster/asset_partition_range_end": "2022-01-28|31UFS",
}
PRODUCT_DAYS = {"2022-01-22|31UFS", "2022-01-27|31UFS"}


def test_empty_days_are_recorded_without_per_partition_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "archive"
    build_archive(archive, [p for p in DEMO_PRODUCTS if p.tile == "31UFS"], size=12)
    defs = build_definitions(
        Settings(data_home=tmp_path / "library", archive_root=str(archive), date_start="2022-01-01")
    )
    job = defs.resolve_implicit_global_asset_job_def()
    calls: list[tuple[str, str | None]] = []
    original = run_metadata.add

    def counted(context, metadata, *, partition_key, asset_key=None):  # type: ignore[no-untyped-def]
        calls.append((asset_key or context.asset_key.to_user_string(), partition_key))
        original(context, metadata, partition_key=partition_key, asset_key=asset_key)

    def unchecked(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("add_asset_metadata checks the key against the whole range")

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tiles", ["31UFS"])
        assert job.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("acquisitions")], partition_key="31UFS"
        ).success
        monkeypatch.setattr(run_metadata, "add", counted)
        monkeypatch.setattr(dg.AssetExecutionContext, "add_asset_metadata", unchecked)
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(k) for k in ("l2a", "cloudmask", "ndvi")],
            tags=RANGE,
        )
        assert result.success
    assert {partition for _, partition in calls} == PRODUCT_DAYS
    assert sorted(asset for asset, _ in calls) == sorted(["l2a", "cloudmask", "ndvi"] * 2)

    events = [
        *result.asset_materializations_for_node("l2a"),
        *result.asset_materializations_for_node("cloudmask"),
        *result.asset_materializations_for_node("indices"),
    ]
    by_key = {(e.asset_key.to_user_string(), e.partition): e.metadata for e in events}
    assert len(by_key) == 3 * 8  # every day of the range is still recorded
    for (asset, partition), metadata in by_key.items():
        held = metadata["products"].value if asset == "l2a" else metadata["count"].value
        if partition in PRODUCT_DAYS:
            assert held > 0, (asset, partition)
        else:
            assert held == 0, (asset, partition)
            assert asset == "l2a" or metadata["files"].value == []
