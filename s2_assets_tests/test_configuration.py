"""Configuration by environment: what a deployment changes is set by variables, bound with
``dg.EnvVar`` when the code location loads; bad values are refused naming the variable; run
config can change Sen2Cor's timeout alone; every variable the code reads is documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from s2_assets.definitions import build_definitions
from s2_assets.settings import DEFAULT_ROOT_ENV, RESOURCE_ENV, SEN2COR_PATHS_ENV, Settings
from s2_assets_tests.sen2cor_standin import write_launcher

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [*RESOURCE_ENV, "S2_SEN2COR_PATHS", "SEN2CHAIN_SEN2COR_BASHRC_PATHS"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("S2_DATA_HOME", str(tmp_path / "library"))
    return tmp_path


def _resolved(defs: dg.Definitions, key: str) -> object:
    """A resource of ``defs`` with its ``EnvVar`` fields read, as a run sees it."""
    with dg.build_resources({key: (defs.resources or {})[key]}) as built:
        return getattr(built, key)


def test_chiller_limits_and_sen2cor_from_the_environment(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("S2_CHILLER_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("S2_CHILLER_CHUNK_SIZE", "250")
    monkeypatch.setenv("S2_CHILLER_MAX_OPEN_JOBS", "2")
    monkeypatch.setenv("S2_SEN2COR_TIMEOUT_S", "5400")
    monkeypatch.setenv("S2_SEN2COR_MAX_PARALLEL", "3")
    defs = build_definitions(Settings.from_env())
    chiller = (defs.resources or {})["chiller"]
    assert chiller.chunk_size == dg.EnvVar.int("S2_CHILLER_CHUNK_SIZE")  # the name, not 250
    resolved = _resolved(defs, "chiller")
    assert (resolved.chunk_size, resolved.max_open_jobs) == (250, 2)  # type: ignore[attr-defined]
    sen2cor = _resolved(defs, "sen2cor")
    assert (sen2cor.timeout_s, sen2cor.max_parallel) == (5400, 3)  # type: ignore[attr-defined]
    # Unset, the resources' own defaults apply.
    for name in RESOURCE_ENV:
        monkeypatch.delenv(name, raising=False)
    defaults = build_definitions(Settings.from_env())
    resolved = _resolved(defaults, "chiller")
    assert (resolved.chunk_size, resolved.max_open_jobs) == (1000, 4)  # type: ignore[attr-defined]
    assert _resolved(defaults, "sen2cor").timeout_s == 7200  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "value", "valid"),
    [
        ("S2_CHILLER_CHUNK_SIZE", "0", "a whole number >= 1"),
        ("S2_CHILLER_MAX_OPEN_JOBS", "four", "a whole number >= 1"),
        ("S2_SEN2COR_TIMEOUT_S", "1.5", "a whole number >= 1"),
        ("S2_CDSE_LOGIN_COOLDOWN_S", "-1", "a whole number >= 0"),
        ("S2_CDSE_TOKEN_URL", "identity.example.org/token", "an http(s) URL"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(
    env: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, valid: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as refused:
        Settings.from_env()
    assert str(refused.value) == f"{name}={value!r} is not valid: expected {valid}"


def test_run_config_sets_the_sen2cor_timeout_without_repeating_installations(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launcher = write_launcher(env / "Sen2Cor-02.12.03" / "bin")
    monkeypatch.setenv("S2_SEN2COR_PATHS", str(launcher))
    seen: list[tuple[int, str]] = []

    @dg.asset
    def probe(sen2cor: dg.ResourceParam[object]) -> None:
        installs = sen2cor.installs()  # type: ignore[attr-defined]
        seen.append((sen2cor.timeout_s, installs[0].version_text))  # type: ignore[attr-defined]

    defs = build_definitions(Settings.from_env())
    sen2cor = (defs.resources or {})["sen2cor"]
    job = dg.Definitions(
        assets=[probe], resources={"sen2cor": sen2cor}
    ).get_implicit_global_asset_job_def()
    run_config = {"resources": {"sen2cor": {"config": {"timeout_s": 600}}}}
    assert job.execute_in_process(run_config=run_config).success
    assert seen == [(600, "02.12.03")]


def test_staging_sensor_cursor_can_be_deleted_without_chiller(env: Path) -> None:
    (env / "home").mkdir()
    run_env = {
        **os.environ,
        "DAGSTER_HOME": str(env / "home"),
        "S2_DATA_HOME": str(env / "library"),
        "S2_CHILLER_URL": "",
    }
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "sensor", "cursor", "staging_sensor", "--delete", "-m", "s2_assets.definitions"],
        env=run_env, cwd=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "KeyError" not in output
    assert "Cleared cursor" in output or "cursor" in output.lower()


def _variables_read() -> set[str]:
    """Every environment variable the package, the deployment files and scripts read."""
    names: set[str] = {DEFAULT_ROOT_ENV, *SEN2COR_PATHS_ENV, *RESOURCE_ENV}
    in_code = re.compile(
        r"""(?:environ\.get|getenv|environ\[|EnvVar(?:\.int)?)\(?\s*["']([A-Z][A-Z0-9_]+)["']"""
    )
    for path in (REPO / "s2_assets").rglob("*.py"):
        names |= set(in_code.findall(path.read_text(encoding="utf-8")))
    for path in [*(REPO / "deploy").rglob("*.yaml"), REPO / "dagster.yaml"]:
        names |= set(re.findall(r"\{env: ([A-Z][A-Z0-9_]+)\}", path.read_text(encoding="utf-8")))
    for path in (REPO / "deploy").glob("*.sh"):
        text = path.read_text(encoding="utf-8")
        names |= set(re.findall(r"\$\{((?:S2|DAGSTER)_[A-Z0-9_]+)[-:}]", text))
    return names


def test_every_variable_the_code_reads_is_in_the_configuration_table() -> None:
    table = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", table, flags=re.MULTILINE))
    read = _variables_read()
    assert {"S2_DATA_HOME", "S2_EXECUTOR", "CDSE_PASSWORD", "S2_CHILLER_CHUNK_SIZE"} <= read
    assert read - documented == set()
