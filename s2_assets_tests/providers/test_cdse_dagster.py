"""``acquisitions -> l1c`` and ``-> l2a`` materialized on a real Dagster instance against the
CDSE stand-in, with the credentials bound through ``dg.EnvVar`` as ``definitions.py`` does,
and the captured logs searched for secrets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from s2_assets.assets.acquisitions import build_acquisitions
from s2_assets.assets.products import build_product_asset
from s2_assets.definitions import build_definitions
from s2_assets.library.tree import Library
from s2_assets.partitions import tile_date_partitions
from s2_assets.resources.cdse import CdseResource
from s2_assets.resources.library import LibraryResource
from s2_assets.resources.providers import ArchiveResource, ProvidersResource
from s2_assets.resources.sen2cor import Sen2CorResource
from s2_assets.settings import Settings
from s2_assets_tests.cdse_standin import CdseStandin
from s2_assets_tests.providers.conftest import SENSING, SERIES

KEY = dg.MultiPartitionKey({"tile": "40KCB", "date": SENSING.date().isoformat()})
DAY = SENSING.date().isoformat()


@pytest.fixture
def dagster_setup(
    cdse: CdseStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[dg.DagsterInstance, dict[str, object], Library]]:
    monkeypatch.setenv("CDSE_USERNAME", cdse.username)
    monkeypatch.setenv("CDSE_PASSWORD", cdse.password)
    resource = CdseResource(
        catalogue_url=cdse.catalogue_url,
        download_url=cdse.download_url,
        token_url=cdse.token_url,
        username=dg.EnvVar("CDSE_USERNAME"),
        password=dg.EnvVar("CDSE_PASSWORD"),
        trusted_hosts=["localhost"],
        backoff_seconds=0.001,
        max_backoff_seconds=0.01,
        chunk_size=8192,
        state_dir=str(tmp_path / "state"),
    )
    resources: dict[str, object] = {
        "library": LibraryResource(root=str(tmp_path / "library")),
        "sen2cor": Sen2CorResource(installations=[]),
        "providers": ProvidersResource(
            default="cop_dataspace",
            archive=ArchiveResource(),
            eodc=ArchiveResource(),
            cop_dataspace=resource,
        ),
    }
    overrides = {
        "python_logs": {"managed_python_loggers": ["s2_assets"], "python_log_level": "DEBUG"}
    }
    with dg.instance_for_test(overrides=overrides) as instance:
        instance.add_dynamic_partitions("tiles", ["40KCB"])
        yield instance, resources, Library(tmp_path / "library")


def _captured(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(str(entry.user_message) for entry in instance.all_logs(run_id))


def test_acquisitions_then_l1c_and_l2a_through_cdse(
    cdse: CdseStandin, dagster_setup: tuple[dg.DagsterInstance, dict[str, object], Library]
) -> None:
    instance, resources, library = dagster_setup
    partitions = tile_date_partitions("2024-01-01")
    acquisitions = build_acquisitions(SENSING.date())
    l1c = build_product_asset("L1C", partitions, acquisitions)
    l2a = build_product_asset("L2A", partitions, acquisitions)
    window = {"start": DAY, "end": DAY, "provider": "cop_dataspace"}
    listed = dg.materialize(
        [acquisitions],
        partition_key="40KCB",
        instance=instance,
        resources=resources,
        run_config={"ops": {"acquisitions": {"config": window}}},
    )
    assert listed.success
    # Both baselines of the L1C datatake, and the L2A; searched, not downloaded.
    assert cdse.stats.zipper_requests == 0 and cdse.stats.logins == 0

    cdse.faults.cut_after = [30000]
    cdse.faults.expire_tokens_at = 70000
    runs = [
        dg.materialize([asset], partition_key=KEY, instance=instance, resources=resources)
        for asset in (l1c, l2a)
    ]
    assert all(run.success for run in runs)
    held = {level: library.products(level, "40KCB") for level in ("L1C", "L2A")}
    assert [p.name.baseline for p in held["L2A"]] == ["05.10"]
    assert "05.10" in {p.name.baseline for p in held["L1C"]}
    assert all(p.path.joinpath("MTD_MSIL1C.xml").is_file() for p in held["L1C"])
    # One login per run (each materialize builds its resources anew); the token expiry
    # injected mid-download cost a refresh, not a login; the cut connection a Range resume.
    assert cdse.stats.logins == 2 and cdse.stats.refreshes == 1
    assert any(r and r.startswith("bytes=") for r in cdse.stats.ranges)

    logs = "\n".join(_captured(instance, run.run_id) for run in [listed, *runs])
    assert "downloaded and verified" in logs  # the provider's own log lines were captured
    secrets = [cdse.password, *cdse.stats.bearer_tokens]
    assert all(secret not in logs for secret in secrets)
    for run in [listed, *runs]:
        stored = instance.get_run_by_id(run.run_id)
        assert stored is not None and cdse.password not in str(stored.run_config)


def test_bad_checksum_fails_the_run_and_publishes_nothing(
    cdse: CdseStandin, dagster_setup: tuple[dg.DagsterInstance, dict[str, object], Library]
) -> None:
    instance, resources, library = dagster_setup
    for product in cdse.products.values():
        product.bad_checksums = product.name.level == "L2A"
    partitions = tile_date_partitions("2024-01-01")
    acquisitions = build_acquisitions(SENSING.date())
    l2a = build_product_asset("L2A", partitions, acquisitions)
    window = {"start": DAY, "end": DAY, "provider": "cop_dataspace", "levels": ["L2A"]}
    assert dg.materialize(
        [acquisitions],
        partition_key="40KCB",
        instance=instance,
        resources=resources,
        run_config={"ops": {"acquisitions": {"config": window}}},
    ).success
    result = dg.materialize(
        [l2a], partition_key=KEY, instance=instance, resources=resources, raise_on_error=False
    )
    assert not result.success
    assert library.products("L2A", "40KCB") == []
    leftovers = [p for p in library.temp_dir.rglob("*") if p.is_file()]
    assert leftovers == []
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "1 L2A product(s) failed" in str(failure.step_failure_data.error)
    assert "does not match the catalogue" in _captured(instance, result.run_id)


def test_a_refused_login_is_tried_once_per_run_and_not_again_in_the_cool_down(
    cdse: CdseStandin,
    dagster_setup: tuple[dg.DagsterInstance, dict[str, object], Library],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    instance, resources, library = dagster_setup
    monkeypatch.setenv("CDSE_PASSWORD", "a-wrong-Passw0rd")
    partitions = tile_date_partitions("2024-01-01")
    acquisitions = build_acquisitions(SENSING.date())
    l1c = build_product_asset("L1C", partitions, acquisitions)
    days = [s.date().isoformat() for s in SERIES[:3]]
    window = {"start": days[0], "end": days[-1], "provider": "cop_dataspace", "levels": ["L1C"]}
    assert dg.materialize(
        [acquisitions],
        partition_key="40KCB",
        instance=instance,
        resources=resources,
        run_config={"ops": {"acquisitions": {"config": window}}},
    ).success
    ranged = {
        "dagster/asset_partition_range_start": f"{days[0]}|40KCB",
        "dagster/asset_partition_range_end": f"{days[-1]}|40KCB",
    }
    messages = []
    for _ in range(2):  # two runs, as two schedule ticks would start them
        result = dg.materialize(
            [l1c], instance=instance, resources=resources, tags=ranged, raise_on_error=False
        )
        assert not result.success
        messages.append(_captured(instance, result.run_id))
    # Three products in the first run, three more in the second: one refused login in all.
    assert cdse.stats.failed_logins == 1 and cdse.stats.logins == 0
    assert library.products("L1C", "40KCB") == []
    for text in messages:
        assert f"CDSE refused the login of user '{cdse.username}'" in text
        assert "a-wrong-Passw0rd" not in text
    assert "no further login with these credentials until" in messages[1]


def test_the_code_location_reaches_a_cdse_mirror_set_by_environment_only(
    cdse: CdseStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "S2_DATA_HOME": str(tmp_path / "library"),
        "S2_DATE_START": "2024-01-01",
        "S2_DEFAULT_PROVIDER": "cop_dataspace",
        "S2_CDSE_CATALOGUE_URL": cdse.catalogue_url,
        "S2_CDSE_DOWNLOAD_URL": cdse.download_url,
        "S2_CDSE_TOKEN_URL": cdse.token_url,
        "S2_CDSE_TRUSTED_HOSTS": "localhost",  # the stand-in's byte server, as zipper is
        "S2_STATE_DIR": str(tmp_path / "state"),
        "S2_CDSE_LOGIN_COOLDOWN_S": "60",
        "CDSE_USERNAME": cdse.username,
        "CDSE_PASSWORD": cdse.password,
    }.items():
        monkeypatch.setenv(name, value)
    defs = build_definitions(Settings.from_env())
    providers = (defs.resources or {})["providers"]
    # Only the variables' names are in the definitions (and so in the UI), not their values.
    assert providers.cop_dataspace.catalogue_url == dg.EnvVar("S2_CDSE_CATALOGUE_URL")
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tiles", ["40KCB"])
        window = {"start": DAY, "end": DAY, "levels": ["L1C"]}
        assert job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey("acquisitions")],
            partition_key="40KCB",
            run_config={"ops": {"acquisitions": {"config": window}}},
        ).success
        assert job.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("l1c")], partition_key=KEY
        ).success
    assert len(cdse.stats.searches) >= 1 and cdse.stats.logins == 1
    assert cdse.stats.completed_streams >= 1
    assert Library(tmp_path / "library").products("L1C", "40KCB") != []
