"""The deployment pieces that need no running service (part of the normal suite): the
executor chosen by configuration, the instance configurations in ``deploy/``, and the
pid-file safety of ``deploy/services.sh``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config_schema

from s2_assets.definitions import (
    CLUSTER_EXECUTORS,
    ExecutorConfigError,
    build_definitions,
    cluster_executor,
    local_executor,
)
from s2_assets.demo.quickstart import DEMO_JOB
from s2_assets.jobs.model import JobSettings
from s2_assets.settings import Settings
from s2_assets_tests.e2e.postgres import free_port

REPO = Path(__file__).resolve().parents[2]
SERVICES_SH = REPO / "deploy" / "services.sh"


def executor_config(
    executor: dg.ExecutorDefinition, run_config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What the executor gets for a run with ``execution: config: <run_config>`` (or none)."""

    @dg.op
    def step() -> None:
        """Nothing to do: the job only carries the executor."""

    @dg.job(executor_def=executor)
    def probe() -> None:
        step()

    config = {} if run_config is None else {"execution": {"config": run_config}}
    execution: dict[str, Any] = dg.validate_run_config(probe, config)["execution"]
    (resolved,) = execution.values()
    return dict(resolved)


def test_local_executor_fills_max_concurrent_only_when_unset() -> None:
    executor = local_executor(3)
    assert executor.name == "multi_or_in_process_executor"
    assert executor_config(executor)["multiprocess"]["max_concurrent"] == 3
    assert executor_config(executor, {"multiprocess": {}})["multiprocess"]["max_concurrent"] == 3
    explicit = executor_config(executor, {"multiprocess": {"max_concurrent": 7}})
    assert explicit["multiprocess"]["max_concurrent"] == 7
    assert set(executor_config(executor, {"in_process": {}})) == {"in_process"}


def test_one_worker_runs_in_process_unless_told_otherwise() -> None:
    executor = local_executor(1)
    assert set(executor_config(executor)) == {"in_process"}
    chosen = executor_config(executor, {"multiprocess": {}})
    assert chosen["multiprocess"]["max_concurrent"] == 1


def test_definitions_take_max_concurrent_from_the_job_files(tmp_path: Path) -> None:
    jobs = tmp_path / "library" / "config" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "job_small.cfg").write_text(DEMO_JOB.replace("nb_proc = 2", "nb_proc = 3"))
    (jobs / "job_tiny.cfg").write_text(DEMO_JOB.replace("nb_proc = 2", "nb_proc = 1"))
    defs = build_definitions(Settings(data_home=tmp_path / "library"))
    assert isinstance(defs.executor, dg.ExecutorDefinition)
    expected = JobSettings(nb_proc=3).workers(os.cpu_count() or 1)  # the larger of the two
    chosen = executor_config(defs.executor, {"multiprocess": {}})
    assert chosen["multiprocess"]["max_concurrent"] == expected


def test_an_explicit_executor_replaces_the_local_one(tmp_path: Path) -> None:
    defs = build_definitions(Settings(data_home=tmp_path), dg.in_process_executor)
    assert defs.executor is dg.in_process_executor


@pytest.mark.parametrize("name", sorted(CLUSTER_EXECUTORS))
def test_cluster_examples_name_their_executor(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each example loads where its integration is installed (``.ci/e2e.sh`` installs Celery's
    and Dask's), and otherwise says what to install."""
    # The Celery example reads its broker and result URLs from these (as Celery itself does).
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://:secret@127.0.0.1:6379/0")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://:secret@127.0.0.1:6379/1")
    path = REPO / "deploy" / "executors" / f"{name}.yaml"
    assert yaml.safe_load(path.read_text())["executor"] == name
    module = CLUSTER_EXECUTORS[name][0]
    try:
        __import__(module)
    except ImportError:
        with pytest.raises(ExecutorConfigError, match=f"pip install {module.replace('_', '-')}"):
            cluster_executor(str(path))
    else:
        assert cluster_executor(str(path)).name == name


def test_cluster_executor_refuses_unknown_names_and_missing_files(tmp_path: Path) -> None:
    unknown = tmp_path / "slurm.yaml"
    unknown.write_text("executor: slurm\n")
    with pytest.raises(ExecutorConfigError, match=r"'slurm' is not one of k8s, celery, dask"):
        cluster_executor(str(unknown))
    with pytest.raises(ExecutorConfigError, match=r"nowhere\.yaml: cannot read it"):
        cluster_executor(str(tmp_path / "nowhere.yaml"))


@pytest.mark.parametrize(
    "path", ["dagster.yaml", "deploy/dagster.postgres.yaml", "deploy/dagster.k8s.yaml"]
)
def test_instance_configs_match_dagsters_schema(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._config import process_config

    for key in ("HOST", "PORT", "DB", "USER", "PASSWORD"):
        monkeypatch.setenv(f"DAGSTER_PG_{key}", "5432" if key == "PORT" else "x")
    config = yaml.safe_load((REPO / path).read_text())
    result = process_config(dagster_instance_config_schema(), config)
    assert result.success, result.errors
    if "storage" in config:
        assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
        # The password comes from the environment, never from the file.
        assert config["storage"]["postgres"]["postgres_db"]["password"] == {
            "env": "DAGSTER_PG_PASSWORD"
        }


def services(command: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SERVICES_SH), command, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_services_sh_needs_dagster_home_and_a_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    assert "set DAGSTER_HOME" in services("status", env).stderr
    env["DAGSTER_HOME"] = str(tmp_path)
    wrong = services("restart", env)
    assert wrong.returncode == 1 and "usage:" in wrong.stderr


def test_services_sh_never_signals_a_pid_that_is_not_its_service(tmp_path: Path) -> None:
    """A pid file left by a crash may name a pid now used by another program."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "S2_RUN_DIR": str(tmp_path / "run")}
    (tmp_path / "run").mkdir()
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "run" / "webserver.pid").write_text(f"{bystander.pid}\n")
        (tmp_path / "run" / "daemon.pid").write_text("not a pid\n")
        status = services("status", env)
        assert status.returncode == 3
        assert "webserver stopped" in status.stdout and "daemon stopped" in status.stdout
        stopped = services("stop", env)
        assert stopped.returncode == 0, stopped.stderr
        assert "webserver not running" in stopped.stdout
        assert bystander.poll() is None, "services.sh signalled a process that is not its own"
        assert not list((tmp_path / "run").glob("*.pid"))
    finally:
        bystander.kill()
        bystander.wait()


def slow_to_exec_services(bin_dir: Path) -> None:
    """Stand-ins in ``S2_VENV_BIN``: a ``python`` that, like a background job's forked shell
    on a loaded machine, runs for a while under a command line that names no service before
    it execs the real interpreter (the daemon's for 4 s: longer than the webserver takes to
    answer, so the check after it lands in that window every time), and a webserver and a
    daemon that only answer and wait."""
    bin_dir.mkdir()
    scripts = {
        "python": f"#!/usr/bin/perl\n$0 = 'starting';\nsleep(grep(/dagster-daemon/, @ARGV) ? 4 : 0);\n"
        f'exec {{"{sys.executable}"}} "{sys.executable}", @ARGV;\n',
        "dagster-webserver": f"#!{sys.executable}\n"
        "import http.server, sys\n"
        "class Answer(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200)\n"
        "        self.end_headers()\n"
        "port = int(sys.argv[sys.argv.index('-p') + 1])\n"
        "http.server.HTTPServer(('127.0.0.1', port), Answer).serve_forever()\n",
        "dagster-daemon": f"#!{sys.executable}\nimport time\ntime.sleep(600)\n",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)


def pids_in(run_dir: Path) -> list[int]:
    return [int(f.read_text()) for f in run_dir.glob("*.pid") if f.read_text().strip().isdigit()]


def test_services_sh_waits_for_a_service_that_is_slow_to_exec(tmp_path: Path) -> None:
    """The pid of a background job names the forked shell until it execs: a start on a
    loaded machine must not take that moment for a service that died."""
    slow_to_exec_services(tmp_path / "bin")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path),
        "S2_RUN_DIR": str(tmp_path / "run"),
        "S2_VENV_BIN": str(tmp_path / "bin"),
        "S2_WEBSERVER_PORT": str(free_port()),
        "S2_POOLS": "",
        "S2_STOP_TIMEOUT": "5",
    }
    try:
        started = services("start", env)
        assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + 30
        while services("status", env).returncode != 0:  # both known by their command lines
            assert time.monotonic() < deadline, services("status", env).stdout
            time.sleep(0.5)
    finally:
        started_pids = pids_in(tmp_path / "run")
        stopped = services("stop", env)
        # What a failed start left: a stop cannot tell a service that has not exec'd yet
        # from a stranger, so it leaves it alone.
        for pid in started_pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    assert stopped.returncode == 0, stopped.stderr
    assert "webserver stopped (pid" in stopped.stdout and "daemon stopped (pid" in stopped.stdout
