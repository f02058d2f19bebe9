"""End to end against real services: PostgreSQL, dagster-webserver and dagster-daemon started
by ``deploy/services.sh``, backfills launched through GraphQL, the UI read by Chromium.

The tests run in file order and share one deployment: the first checks the services, the
second launches the backfills and checks what they produced, the third looks at the result
in a browser, the last stops everything and checks that no process it started is left.
Run them with ``.ci/e2e.sh`` (it installs what they need and sets ``S2_E2E=1``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from s2_assets.demo.products import DEMO_PRODUCTS, DEMO_TILES, product_name
from s2_assets_tests.e2e.conftest import Deployment
from s2_assets_tests.e2e.graphql import GraphQL, poll
from s2_assets_tests.e2e.postgres import pid_alive

pytestmark = pytest.mark.skipif(
    os.environ.get("S2_E2E") != "1",
    reason="end-to-end against PostgreSQL, webserver, daemon and Chromium: run .ci/e2e.sh",
)

PRODUCT_ASSETS = ("l1c", "l2a", "cloudmask", "ndvi")
BACKFILL_TIMEOUT_S = 420
# The partition the browser opens: 40KCB has two baselines that day (04.00 and 05.09).
OPEN_KEY = "2022-01-30|40KCB"


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser saves its screenshots: a temporary folder, so a test run leaves the
    checkout as it was; ``S2_E2E_SCREENSHOTS=docs .ci/e2e.sh`` refreshes the docs images."""
    chosen = os.environ.get("S2_E2E_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def tile_ranges() -> dict[str, tuple[date, date]]:
    """Each demo tile's first and last sensing day: the span its backfill covers."""
    days: dict[str, list[date]] = defaultdict(list)
    for product in DEMO_PRODUCTS:
        days[product.tile].append(product.sensing.date())
    return {tile: (min(d), max(d)) for tile, d in days.items()}


def expected_keys() -> set[str]:
    """Every (tile, day) of each tile's span: a ranged run records days without products too."""
    keys = set()
    for tile, (first, last) in tile_ranges().items():
        keys |= {f"{first + timedelta(n)}|{tile}" for n in range((last - first).days + 1)}
    return keys


def expected_products(level: str) -> set[str]:
    """The product ids the default options keep: the newest baseline of each acquisition."""
    newest: dict[tuple[str, date], Any] = {}
    for product in DEMO_PRODUCTS:
        key = (product.tile, product.sensing.date())
        if product.level == level and (
            key not in newest or product.baseline > newest[key].baseline
        ):
            newest[key] = product
    return {product_name(p).id for p in newest.values()}


@dataclass(frozen=True)
class Backfills:
    """What the GraphQL-launched backfills left: ids and their runs."""

    catalogue_id: str
    catalogue_runs: list[dict[str, Any]]
    products_id: str
    products_runs: list[dict[str, Any]]


@pytest.fixture(scope="module")
def backfills(graphql: GraphQL) -> Backfills:
    """As an operator would from the UI: register the tiles, pause the discovery sensor (so
    that only these backfills run), backfill the catalogues, then the products."""
    for tile in DEMO_TILES:
        graphql.add_tile(tile)
    graphql.stop_sensor("new_acquisitions_sensor")
    # Composites have their own e2e module; here they would add runs after the products.
    graphql.stop_sensor("composite_automation_sensor")
    catalogue_id = graphql.launch_backfill(
        {
            "partitionsByAssets": [
                {
                    "assetKey": {"path": ["acquisitions"]},
                    "partitions": {"ranges": [{"start": t, "end": t} for t in DEMO_TILES]},
                }
            ],
            "title": "e2e: catalogues",
            # The executor is run config: a process per step here, as on a bigger machine.
            "runConfigData": {"execution": {"config": {"multiprocess": {}}}},
        }
    )

    # The products backfill only needs the catalogue runs done, not the daemon's next pass
    # that marks their backfill complete (checked at the end instead): 30 s saved.
    def catalogues_done() -> str | None:
        runs = graphql.backfill_runs(catalogue_id)
        failed = [r["runId"] for r in runs if r["status"] in ("FAILURE", "CANCELED")]
        assert not failed, "\n".join(graphql.run_messages(failed[0])[-30:])
        statuses = [r["status"] for r in runs]
        return None if statuses == ["SUCCESS"] * len(DEMO_TILES) else f"runs {statuses}"

    poll(catalogues_done, BACKFILL_TIMEOUT_S, interval_s=2.0)
    ranges = [{"start": f"{a}|{t}", "end": f"{b}|{t}"} for t, (a, b) in tile_ranges().items()]
    products_id = graphql.launch_backfill(
        {
            "partitionsByAssets": [
                {"assetKey": {"path": [name]}, "partitions": {"ranges": ranges}}
                for name in PRODUCT_ASSETS
            ],
            "title": "e2e: products",
            "tags": [{"key": "s2/e2e", "value": "products"}],
            # In-process spares a subprocess per step (seconds each on a small machine).
            "runConfigData": {"execution": {"config": {"in_process": {}}}},
        }
    )
    products_runs = graphql.wait_for_backfill(products_id, BACKFILL_TIMEOUT_S)
    catalogue_runs = graphql.wait_for_backfill(catalogue_id, BACKFILL_TIMEOUT_S)
    return Backfills(catalogue_id, catalogue_runs, products_id, products_runs)


def test_services_run_on_postgres_bound_to_loopback(
    graphql: GraphQL, services: Deployment, instance: dg.DagsterInstance
) -> None:
    status = services.services("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "webserver running" in status.stdout and "daemon running" in status.stdout
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    port = int(services.env["S2_WEBSERVER_PORT"])
    assert listening_addresses(port) == {"127.0.0.1"}
    limits = {
        pool: instance.event_log_storage.get_concurrency_info(pool).slot_count
        for pool in ("download", "sen2cor", "raster")
    }
    assert limits == {"download": 4, "sen2cor": 1, "raster": 2}


def test_backfills_through_graphql_materialize_the_products(
    backfills: Backfills, services: Deployment, instance: dg.DagsterInstance
) -> None:
    for backfill_id in (backfills.catalogue_id, backfills.products_id):
        status = GraphQL(services.base_url).backfill_status(backfill_id)
        assert status == "COMPLETED_SUCCESS", f"backfill {backfill_id}: {status}"
    catalogue_runs = {tag_value(r, "dagster/partition") for r in backfills.catalogue_runs}
    assert catalogue_runs == set(DEMO_TILES)
    # One ranged run per tile covering every product asset (BackfillPolicy.single_run).
    ranged = {
        (
            tag_value(r, "dagster/asset_partition_range_start"),
            tag_value(r, "dagster/asset_partition_range_end"),
        )
        for r in backfills.products_runs
    }
    assert ranged == {(f"{a}|{t}", f"{b}|{t}") for t, (a, b) in tile_ranges().items()}
    for run in backfills.products_runs:
        assert {p["path"][0] for p in run["assetSelection"]} == set(PRODUCT_ASSETS)
        assert run["status"] == "SUCCESS"
    executors = {
        run["runId"]: executor_of(instance, run["runId"])
        for run in backfills.catalogue_runs + backfills.products_runs
    }
    assert {executors[r["runId"]] for r in backfills.catalogue_runs} == {"multiprocess"}
    assert {executors[r["runId"]] for r in backfills.products_runs} == {"in_process"}
    for run in backfills.catalogue_runs + backfills.products_runs:
        record = instance.get_run_record_by_id(run["runId"])
        assert record is not None and record.start_time and record.end_time
        assets = ",".join(sorted(p["path"][0] for p in run["assetSelection"]))
        # Shown by `pytest -rA`: what a run costs on this machine, per executor.
        print(
            f"run {assets} {executors[run['runId']]}: {record.end_time - record.start_time:.1f} s"
        )

    data = services.library / "data"
    for level in ("L1C", "L2A"):
        held = {p.name.removesuffix(".SAFE") for p in data.glob(f"{level}/*/*.SAFE")}
        assert held == expected_products(level), level
    l2a_ids = expected_products("L2A")
    masks = {p.parent.name for p in data.glob("CLOUDMASKS/*/*/*.tif")}
    assert masks == l2a_ids
    ndvi = sorted(data.glob("INDICES/NDVI/*/*/*.tif"))
    # The raw index and the variant masked by the default mask, per L2A.
    assert len(ndvi) == 2 * len(l2a_ids) and {p.parent.name for p in ndvi} == l2a_ids

    keys = expected_keys()
    for name in PRODUCT_ASSETS:
        assert set(instance.get_materialized_partitions(dg.AssetKey(name))) == keys, name
    assert set(instance.get_materialized_partitions(dg.AssetKey("acquisitions"))) == set(DEMO_TILES)
    metadata = latest_metadata(instance, "ndvi", OPEN_KEY)
    assert str(metadata["quicklook"].value).startswith("![")
    assert "data:image/png;base64," in str(metadata["quicklook"].value)
    files = metadata["files"].value
    assert isinstance(files, list) and len(files) == 2
    assert all(Path(f["path"]).is_file() for f in files)


def test_browser_shows_the_ndvi_partitions_and_quicklook(
    backfills: Backfills, services: Deployment, screenshots: Path
) -> None:
    node = shutil.which("node")
    assert node, "node is not installed (.ci/e2e.sh installs Node and playwright-core)"
    assert os.environ.get("NODE_PATH"), "NODE_PATH must hold playwright-core (.ci/e2e.sh sets it)"
    first = min(a for a, _ in tile_ranges().values()) - timedelta(days=2)
    last = max(b for _, b in tile_ranges().values()) + timedelta(days=2)
    script = Path(__file__).with_name("ndvi_page.cjs")
    done = subprocess.run(
        [node, str(script), services.base_url, str(first), str(last), OPEN_KEY, str(screenshots)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"browser script failed:\n{done.stderr[-4000:]}"
    seen = json.loads(done.stdout)

    keys = expected_keys()
    assert seen["materialized"] == len(keys)
    assert seen["failed"] == 0 and seen["materializing"] == 0
    days_in_view = (last - first).days + 1
    assert seen["missing"] == days_in_view * len(DEMO_TILES) - len(keys)
    green = "var(--color-accent-green)"
    assert {d["key"] for d in seen["days"]} == {k.split("|")[0] for k in keys}
    grid = {
        f"{day}|{tile['key']}"
        for day, tiles in seen["tiles_by_day"].items()
        for tile in tiles
        if tile["dots"] == [green]
    }
    assert grid == keys, "the partition grid differs from the materialized (tile, day) pairs"
    assert seen["open_partition_text"].startswith(f"{OPEN_KEY}\nMaterialized\n")
    quicklook = seen["quicklook"]
    assert quicklook["src_prefix"] == "data:image/png;base64,"
    # The quicklook decoded in the browser: as many pixels as the demo product (120 px).
    assert quicklook["width"] == quicklook["height"] == 120
    assert png_size(screenshots / "ndvi-partitions.png") == (1400, 1250)  # the viewport
    width, height = png_size(screenshots / "ndvi-quicklook.png")  # the dialog around it
    assert width > 120 and height > 120


def test_browser_walks_the_readme_tour(
    backfills: Backfills, services: Deployment, screenshots: Path
) -> None:
    """The pages the README's tour shows: asset graph, Automation, a backfill."""
    node = shutil.which("node")
    assert node, "node is not installed (.ci/e2e.sh installs Node and playwright-core)"
    script = Path(__file__).with_name("tour_pages.cjs")
    done = subprocess.run(
        [node, str(script), services.base_url, backfills.products_id, str(screenshots)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"browser script failed:\n{done.stderr[-4000:]}"
    seen = json.loads(done.stdout)
    # The lineage upstream of ndvi (l1c is not upstream of a downloaded l2a).
    for name in ("acquisitions", "l2a", "cloudmask", "ndvi"):
        assert name in seen["graph"].split("\n"), name
    assert "new_acquisitions_sensor" in seen["automation"].split("\n")
    backfill = seen["backfill"].split("\n")
    assert f"Runs / {backfills.products_id}" in backfill and "Succeeded" in backfill
    assert set(PRODUCT_ASSETS) <= set(backfill)
    for shot in ("tour-asset-graph.png", "tour-automation.png", "tour-backfill.png"):
        assert png_size(screenshots / shot) == (1400, 900), shot


JOB_FILE = """logs = False
timing = 0 1 * * *
provider = archive
tile;date_min;date_max;max_clouds;provider;filter_max_pb;download;compute_l2a;cloudmasks;indices;remove;comments
40KCB;2022-01-01;2022-02-10;80;archive;True;l2a;False;CM004-CSH1-CMP1-CHP1-TCI1-ITER0;NDWIGAO;;e2e
"""


def test_run_webserver_converges_the_job_through_the_daemon(
    backfills: Backfills, graphql: GraphQL, services: Deployment, instance: dg.DagsterInstance
) -> None:
    """``s2-assets run <jid> --webserver``: the refresh goes through the webserver (Dagster's
    GraphQL client), the daemon's sensor plans the job and backfills only what is missing
    (NDWIGAO: the L2A and masks exist from the backfills above)."""
    jobs = services.library / "config" / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    (jobs / "job_e2e.cfg").write_text(JOB_FILE)
    graphql.start_sensor("new_acquisitions_sensor")
    cli = Path(services.env["S2_VENV_BIN"]) / "s2-assets"
    # A server error is shown with the server's own words (here: no such code location).
    refused = subprocess.run(
        [str(cli), "run", "e2e", "--webserver", services.base_url, "--location", "nope"],
        env=services.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and "nope" in refused.stderr, refused.stderr
    done = subprocess.run(
        [str(cli), "run", "e2e", "--webserver", services.base_url],
        env=services.env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitted 1 catalogue refresh run(s)" in done.stdout

    def launched() -> str | None:
        ours = [b for b in instance.get_backfills() if b.tags.get("s2/job") == "e2e"]
        return None if ours else "no backfill for job e2e yet"

    poll(launched, BACKFILL_TIMEOUT_S, interval_s=3.0)
    (backfill,) = [b for b in instance.get_backfills() if b.tags.get("s2/job") == "e2e"]
    # clean_after defaults to True (as in sen2chain): housekeeping runs after the index.
    assert {k.to_user_string() for k in backfill.asset_selection} == {"ndwigao", "housekeeping"}
    graphql.wait_for_backfill(backfill.backfill_id, BACKFILL_TIMEOUT_S)
    made = sorted(
        p.name for p in (services.library / "data" / "INDICES" / "NDWIGAO").rglob("*.tif")
    )
    # Three L2A under 80 % cloud on 40KCB, raw and masked each.
    assert len(made) == 6, made


def test_stop_ends_every_process_it_started(services: Deployment) -> None:
    pids = {int((services.run_dir / f"{name}.pid").read_text()) for name in ("webserver", "daemon")}
    started = {pid for pid in all_pids() if process_group(pid) in pids}
    assert pids <= started and len(started) > len(pids), "expected code servers beside each service"
    stopped = services.services("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "daemon stopped" in stopped.stdout and "webserver stopped" in stopped.stdout
    assert not [pid for pid in started if pid_alive(pid)], "processes left after services.sh stop"
    assert not list(services.run_dir.glob("*.pid"))
    status = services.services("status")
    assert status.returncode == 3 and "webserver stopped" in status.stdout


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header chunk."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def tag_value(run: dict[str, Any], key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def executor_of(instance: dg.DagsterInstance, run_id: str) -> str:
    """Which executor ran a run, from its first engine event."""
    for entry in instance.all_logs(run_id):
        message = entry.message or ""
        if "Executing steps using multiprocess executor" in message:
            return "multiprocess"
        if "Executing steps in process" in message:
            return "in_process"
    return "unknown"


def latest_metadata(instance: dg.DagsterInstance, asset: str, partition: str) -> dict[str, Any]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    assert records, f"no materialization of {asset} {partition}"
    materialization = records[0].asset_materialization
    assert materialization is not None
    return dict(materialization.metadata)


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (IPv4 and IPv6)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.add(decode_address(address, width))
    return found


def decode_address(hex_address: str, width: int) -> str:
    raw = bytes.fromhex(hex_address)
    if width == 8:
        return ".".join(str(b) for b in reversed(raw))
    # /proc/net/tcp6 stores four little-endian 32-bit words.
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
    return str(ipaddress.IPv6Address(b"".join(words)))


def all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def process_group(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(stat.rpartition(")")[2].split()[2])
