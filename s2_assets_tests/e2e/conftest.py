"""Fixtures of the end-to-end tests: a real PostgreSQL server, the demo archive, and
dagster-webserver + dagster-daemon started by ``deploy/services.sh`` on that storage.

They run only with ``S2_E2E=1``, which ``.ci/e2e.sh`` sets after installing PostgreSQL,
Chromium and playwright-core. With it set nothing is skipped: whatever is missing fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from s2_assets.demo.products import DEMO_PRODUCTS, DemoProduct, build_archive
from s2_assets_tests.e2e.graphql import GraphQL
from s2_assets_tests.e2e.postgres import PostgresServer, free_port, start_postgres

REPO = Path(__file__).resolve().parents[2]
SERVICES_SH = REPO / "deploy" / "services.sh"
# The demo's own size: quicklooks of 120 px show in the screenshots; the archive builds in ~5 s.
DEMO_SIZE = 120
DATE_START = "2022-01-01"
START_TIMEOUT_S = 180


@dataclass(frozen=True)
class Deployment:
    """One instance: its folders, the environment the services and runs see, its URL."""

    home: Path
    library: Path
    archive: Path
    env: dict[str, str]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.env['S2_WEBSERVER_PORT']}"

    @property
    def run_dir(self) -> Path:
        return Path(self.env["S2_RUN_DIR"])

    def services(self, command: str) -> subprocess.CompletedProcess[str]:
        """``deploy/services.sh <command>`` as CI runs it: SIGINT and SIGTERM ignored, as
        every background job of a non-interactive shell inherits them."""

        def ignore_signals() -> None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

        return subprocess.run(
            [str(SERVICES_SH), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S + 60,
            preexec_fn=ignore_signals,
            check=False,
        )

    @classmethod
    def create(
        cls, base: Path, postgres: PostgresServer, products: Sequence[DemoProduct]
    ) -> Deployment:
        """Below ``base``: DAGSTER_HOME with ``deploy/dagster.postgres.yaml`` on ``postgres``,
        an empty library, and an archive of ``products`` at the demo's size."""
        home, library, archive = base / "dagster_home", base / "library", base / "archive"
        home.mkdir()
        library.mkdir()
        shutil.copyfile(REPO / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
        build_archive(archive, products, size=DEMO_SIZE)
        env = {key: value for key, value in os.environ.items() if not key.startswith("S2_")}
        env.update(postgres.environment())
        env.update(
            {
                "DAGSTER_HOME": str(home),
                "S2_DATA_HOME": str(library),
                "S2_ARCHIVE_ROOT": str(archive),
                "S2_DATE_START": DATE_START,
                "S2_WEBSERVER_PORT": str(free_port()),
                "S2_VENV_BIN": str(Path(sys.executable).parent),
                "S2_RUN_DIR": str(base / "services"),
                "S2_START_TIMEOUT": str(START_TIMEOUT_S),
            }
        )
        return cls(home=home, library=library, archive=archive, env=env)

    @contextmanager
    def running(self) -> Iterator[Deployment]:
        """Webserver and daemon started; stopped (by pid) at the end whatever happened."""
        started = self.services("start")
        try:
            assert started.returncode == 0, (
                f"services.sh start:\n{started.stdout}\n{started.stderr}"
            )
            yield self
        finally:
            stopped = self.services("stop")
            assert stopped.returncode == 0, f"services.sh stop:\n{stopped.stdout}\n{stopped.stderr}"

    @contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        """The same instance the services use (Postgres), opened from this process."""
        with pytest.MonkeyPatch.context() as patch:
            for key, value in self.env.items():
                if key.startswith("DAGSTER_PG_"):
                    patch.setenv(key, value)
            with dg.DagsterInstance.from_config(str(self.home)) as opened:
                yield opened


@contextmanager
def postgres_running() -> Iterator[PostgresServer]:
    """A PostgreSQL server of our own on 127.0.0.1, stopped by its postmaster's pid."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of our own on 127.0.0.1, stopped by its postmaster's pid."""
    with postgres_running() as server:
        yield server


@pytest.fixture(scope="package")
def deployment(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Deployment:
    """DAGSTER_HOME with ``deploy/dagster.postgres.yaml``, an empty library, the demo archive."""
    return Deployment.create(tmp_path_factory.mktemp("production"), postgres, DEMO_PRODUCTS)


@pytest.fixture(scope="package")
def services(deployment: Deployment) -> Iterator[Deployment]:
    """Webserver and daemon running; stopped (by pid) at the end whatever happened."""
    with deployment.running():
        yield deployment


@pytest.fixture(scope="package")
def graphql(services: Deployment) -> GraphQL:
    """The webserver's GraphQL API, once the code location is loaded and the daemon healthy."""
    client = GraphQL(services.base_url)
    client.wait_until_loaded(timeout_s=START_TIMEOUT_S)
    return client


@pytest.fixture(scope="package")
def instance(deployment: Deployment) -> Iterator[dg.DagsterInstance]:
    """The same instance the services use (Postgres), opened from this process."""
    with deployment.instance() as opened:
        yield opened
