"""End to end: a monthly composite materialized through the webserver, on its own deployment
(PostgreSQL, dagster-webserver, dagster-daemon started by ``deploy/services.sh``).

As an operator would: register a tile, backfill its catalogue and its products for January
2022 (l1c -> l2a -> cloudmask -> ndvi) and the ``composite`` months in one backfill launched
through GraphQL, and check the COGs against a numpy reference computed from the masked NDVI files.
The deployment is this module's own, so the other e2e module's expectations are untouched.
Run with ``.ci/e2e.sh`` (it sets ``S2_E2E=1``), only ever one e2e run at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import dagster as dg
import numpy as np
import pytest
import rasterio

from s2_assets.demo.products import DEMO_PRODUCTS
from s2_assets.products import ProductName
from s2_assets.specs import DEFAULT_MASK_SPEC
from s2_assets_tests.e2e.conftest import START_TIMEOUT_S, Deployment, postgres_running
from s2_assets_tests.e2e.graphql import GraphQL
from s2_assets_tests.e2e.postgres import PostgresServer
from s2_assets_tests.raster.test_composite import reference

pytestmark = pytest.mark.skipif(
    os.environ.get("S2_E2E") != "1",
    reason="end-to-end against PostgreSQL, webserver and daemon: run .ci/e2e.sh",
)

TILE = "40KCB"
FIRST, LAST = "2022-01-20", "2022-02-04"  # 40KCB's demo acquisitions
MONTHS = ("2022-01", "2022-02")
TIMEOUT_S = 420


@pytest.fixture(scope="module")
def composite_postgres() -> Iterator[PostgresServer]:
    with postgres_running() as server:
        yield server


@pytest.fixture(scope="module")
def composite_services(
    tmp_path_factory: pytest.TempPathFactory, composite_postgres: PostgresServer
) -> Iterator[Deployment]:
    """A deployment of its own: Postgres storage, empty library, 40KCB's demo products."""
    base = tmp_path_factory.mktemp("composites")
    products = [p for p in DEMO_PRODUCTS if p.tile == TILE]
    with Deployment.create(base, composite_postgres, products).running() as deployment:
        yield deployment


@pytest.fixture(scope="module")
def composite_instance(composite_services: Deployment) -> Iterator[dg.DagsterInstance]:
    with composite_services.instance() as opened:
        yield opened


def test_a_composite_month_is_materialized_through_the_webserver(
    composite_services: Deployment, composite_instance: dg.DagsterInstance
) -> None:
    api = GraphQL(composite_services.base_url)
    api.wait_until_loaded(timeout_s=START_TIMEOUT_S)
    api.add_tile(TILE)
    # Only the backfills below run: no discovery, and no automatic composite in between.
    api.stop_sensor("new_acquisitions_sensor")
    api.stop_sensor("composite_automation_sensor")
    # One backfill, as the UI's Materialize dialog launches it for an asset selection: the
    # catalogue (tile), the products of January (tile x day) and the composite months (tile x
    # month). The daemon orders them by their dependencies: a month runs after its days.
    days = {"ranges": [{"start": f"{FIRST}|{TILE}", "end": f"{LAST}|{TILE}"}]}
    months = {"ranges": [{"start": f"{MONTHS[0]}|{TILE}", "end": f"{MONTHS[-1]}|{TILE}"}]}
    backfill = api.launch_backfill(
        {
            "partitionsByAssets": [
                {
                    "assetKey": {"path": ["acquisitions"]},
                    "partitions": {"ranges": [{"start": TILE, "end": TILE}]},
                },
                *(
                    {"assetKey": {"path": [name]}, "partitions": days}
                    for name in ("l1c", "l2a", "cloudmask", "ndvi")
                ),
                {"assetKey": {"path": ["composite"]}, "partitions": months},
            ],
            "title": "e2e: composites",
            "runConfigData": {"execution": {"config": {"in_process": {}}}},
        }
    )
    runs = api.wait_for_backfill(backfill, TIMEOUT_S)
    assert api.backfill_status(backfill) == "COMPLETED_SUCCESS"
    composite_runs = [
        r for r in runs if {p["path"][0] for p in r["assetSelection"]} == {"composite"}
    ]
    # Both months in one ranged run (BackfillPolicy.single_run), after the products.
    assert [r["status"] for r in composite_runs] == ["SUCCESS"]

    data = composite_services.library / "data"
    assert set(composite_instance.get_materialized_partitions(dg.AssetKey("composite"))) == {
        f"{month}|{TILE}" for month in MONTHS
    }
    for month in MONTHS:
        inputs = sorted(
            p
            for p in data.glob(f"INDICES/NDVI/{TILE}/*/*_NDVI_{DEFAULT_MASK_SPEC}.tif")
            if ProductName.parse(p.parent.name).sensing.strftime("%Y-%m") == month
        )
        assert inputs, f"no masked NDVI in {month}"
        layers = []
        for path in inputs:
            with rasterio.open(path) as src:
                layers.append(src.read(1))
        expected = reference(layers)
        folder = data / "COMPOSITES" / "NDVI" / TILE / month
        for stat in ("median", "mean", "count", "max"):
            path = folder / f"{TILE}_{month}_NDVI_{DEFAULT_MASK_SPEC}_{stat.upper()}.tif"
            with rasterio.open(path) as src:
                np.testing.assert_array_equal(src.read(1), expected[stat], err_msg=str(path))
        records = composite_instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("composite"), asset_partitions=[f"{month}|{TILE}"]
            ),
            limit=1,
        ).records
        metadata = records[0].asset_materialization.metadata  # type: ignore[union-attr]
        assert metadata["observations"].value == len(inputs)
        listed = metadata["inputs"].value[f"NDVI {DEFAULT_MASK_SPEC}"]  # type: ignore[index]
        assert [row["path"] for row in listed] == [str(p) for p in inputs]
        assert "data:image/png;base64," in str(metadata["quicklook"].value)
