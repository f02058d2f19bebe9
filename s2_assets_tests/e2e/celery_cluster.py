"""A Celery cluster of our own for the end-to-end test: Debian's ``redis-server`` on a free
loopback port with a password, and ``celery -A dagster_celery.app worker`` processes, each in
its own session and stopped by its pid (the group it leads).

The broker password never appears on a command line or in a log: Redis reads its config on
stdin, and Celery and the executor take the URL from ``CELERY_BROKER_URL`` (Celery prints it
with the password masked). Workers are started with ``celery`` itself rather than
``dagster-celery worker start``, which writes the resolved broker URL, password included, to a
config module under ``$DAGSTER_HOME`` and runs Celery as a child we would not hold the pid of.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from s2_assets_tests.e2e.postgres import free_port, pid_alive

STOP_TIMEOUT_S = 30.0


class ClusterUnavailable(RuntimeError):
    """``redis-server`` or ``celery`` is missing, or would not start."""


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def group_pids(pgid: int) -> set[int]:
    """Live processes of process group ``pgid`` (a worker and its pool children)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            found.add(int(entry.name))
    return found


def stop_group(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> None:
    """``sig`` to the group ``process`` leads, then SIGKILL if it lingers; reaps it."""
    for signum in (sig, signal.SIGKILL):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while group_pids(process.pid) and time.monotonic() < deadline:
            process.poll()
            time.sleep(0.1)
        if not group_pids(process.pid):
            break
    process.wait(timeout=STOP_TIMEOUT_S)


@dataclass
class RedisServer:
    """One ``redis-server`` on 127.0.0.1; ``urls()`` is what the executor and workers read."""

    port: int
    password: str
    process: subprocess.Popen[bytes]
    root: Path

    def environment(self) -> dict[str, str]:
        base = f"redis://:{self.password}@127.0.0.1:{self.port}"
        # Tasks on database 0, results on 1: one server, no key clash.
        return {"CELERY_BROKER_URL": f"{base}/0", "CELERY_RESULT_BACKEND": f"{base}/1"}

    def stop(self) -> None:
        stop_group(self.process)


def start_redis(root: Path) -> RedisServer:
    """``redis-server`` with its config on stdin (bind, port, password, no persistence).

    Raises:
        ClusterUnavailable: when the program is missing or does not answer.
    """
    program = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(program).is_file():
        raise ClusterUnavailable(
            "no redis-server on PATH: install it (Debian: apt-get install redis-server)"
        )
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    password = os.environ.get("S2_E2E_REDIS_PASSWORD") or secrets.token_urlsafe(16)
    config = "\n".join(
        [
            "bind 127.0.0.1",
            f"port {port}",
            f"requirepass {password}",
            'save ""',
            "appendonly no",
            f"dir {root}",
            f"logfile {root / 'redis.log'}",
            "daemonize no",
            "",
        ]
    )
    process = subprocess.Popen(
        [program, "-"], stdin=subprocess.PIPE, start_new_session=True, cwd=root
    )
    assert process.stdin is not None
    process.stdin.write(config.encode())
    process.stdin.close()
    server = RedisServer(port=port, password=password, process=process, root=root)
    try:
        _wait_for_redis(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_for_redis(server: RedisServer, timeout_s: float = 30.0) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=server.port, password=server.password)
    deadline = time.monotonic() + timeout_s
    while True:
        if server.process.poll() is not None:
            log = (server.root / "redis.log").read_text(errors="replace")[-2000:]
            raise ClusterUnavailable(f"redis-server exited ({server.process.returncode}): {log}")
        try:
            if client.ping():
                return
        except redis.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise ClusterUnavailable(f"redis-server on port {server.port} did not answer")
        time.sleep(0.1)


@dataclass
class CeleryWorker:
    """One ``celery worker`` (prefork pool, one child): the step runs in that child."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    pids: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.process.pid

    def remember_pids(self) -> set[int]:
        """The worker's processes now (kept, so a killed worker's pids stay known)."""
        self.pids |= group_pids(self.pid)
        return self.pids

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the worker and its pool child at once: a machine lost mid-step."""
        self.remember_pids()
        stop_group(self.process, signal.SIGKILL)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM: finish the current task), SIGKILL if it lingers."""
        if self.alive():
            self.remember_pids()
        stop_group(self.process)


def start_worker(
    name: str, env: dict[str, str], log_dir: Path, venv_bin: Path, timeout_s: float = 90.0
) -> CeleryWorker:
    """``celery -A dagster_celery.app worker`` named ``name@<host>``, one task at a time;
    returns once it is ready (its log says so).

    Raises:
        ClusterUnavailable: when it exits or is not ready within ``timeout_s``.
    """
    celery = venv_bin / "celery"
    if not celery.is_file():
        raise ClusterUnavailable(f"no {celery}: pip install -e '.[celery]'")
    log = log_dir / f"{name}.log"
    argv = [
        str(celery), "-A", "dagster_celery.app", "worker", "--loglevel=INFO",
        "--concurrency=1", "--prefetch-multiplier=1", "-n", f"{name}@%h",
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    worker = CeleryWorker(name=name, process=process, log=log)
    deadline = time.monotonic() + timeout_s
    while " ready." not in log.read_text(errors="replace"):
        if not worker.alive() or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            worker.stop()
            raise ClusterUnavailable(f"celery worker {name} did not start:\n{tail}")
        time.sleep(0.3)
    worker.remember_pids()
    return worker
