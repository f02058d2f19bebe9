"""A throwaway PostgreSQL server for the end-to-end tests: its own cluster in a temp folder,
listening on 127.0.0.1 only, with a password, stopped by the postmaster's pid.

PostgreSQL refuses to run as root, so when the tests run as root the cluster belongs to the
``postgres`` system user (Debian's package creates it) or, failing that, ``nobody``.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STOP_TIMEOUT_S = 30.0


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server programs on this machine, or the server would not start."""


def server_bin_dir() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Raises:
        PostgresUnavailable: listing where it looked.
    """
    candidates = [os.environ.get("S2_E2E_PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).resolve().parent))
    for folder in filter(None, candidates):
        if all((Path(folder) / p).is_file() for p in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    raise PostgresUnavailable(
        "no PostgreSQL server programs (initdb, pg_ctl, postgres) in S2_E2E_PG_BIN, "
        "/usr/lib/postgresql/*/bin or PATH: install them (Debian: apt-get install postgresql)"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process; a zombie (exited, not yet reaped by a parent that
    may never reap it, e.g. a container's init) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _owner() -> pwd.struct_passwd | None:
    """The user to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailable("running as root and neither user 'postgres' nor 'nobody' exists")


@dataclass
class PostgresServer:
    """One running cluster; ``environment()`` is what dagster.postgres.yaml reads."""

    root: Path
    port: int
    user: str
    password: str
    database: str
    postmaster_pid: int

    def environment(self) -> dict[str, str]:
        return {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.database,
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
        }

    def alive(self) -> bool:
        return pid_alive(self.postmaster_pid)

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster), SIGQUIT if it hangs; waits until gone,
        then deletes the cluster's folder.

        Raises:
            RuntimeError: if the postmaster outlives both signals.
        """
        for sig in (signal.SIGINT, signal.SIGQUIT):
            if not self.alive():
                break
            os.kill(self.postmaster_pid, sig)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
        if self.alive():
            raise RuntimeError(f"PostgreSQL postmaster {self.postmaster_pid} did not stop")
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(*, database: str = "dagster") -> PostgresServer:
    """initdb a cluster in a new temp folder, start it on a free loopback port, create
    ``database``. The folder sits directly in the system temp dir because a server running as
    another user must be able to reach it (pytest's temp dirs are private to us).

    Raises:
        PostgresUnavailable: when the programs are missing or the server does not start.
    """
    bin_dir = server_bin_dir()
    owner = _owner()
    root = Path(tempfile.mkdtemp(prefix="s2-e2e-pg-"))
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    sockets.mkdir(parents=True)
    password = secrets.token_urlsafe(16)
    password_file = root / "password"
    password_file.write_text(password + "\n", encoding="utf-8")
    password_file.chmod(0o600)
    if owner is not None:
        for path in (root, sockets, password_file):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    user = "dagster"

    def run(argv: list[str], env: dict[str, str] | None = None) -> None:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=env,
            check=False,
            user=owner.pw_uid if owner else None,
            group=owner.pw_gid if owner else None,
        )
        if done.returncode:
            raise PostgresUnavailable(
                f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}"
            )

    # --no-sync and fsync=off: a test cluster that is thrown away needs no durability.
    run([str(bin_dir / "initdb"), "-D", str(data), "-U", user, "-A", "scram-sha-256",
         f"--pwfile={password_file}", "-E", "UTF8", "--no-sync"])  # fmt: skip
    port = free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off"
    run([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w",
         "-t", "60", "start"])  # fmt: skip
    pid_file = data / "postmaster.pid"
    server = PostgresServer(
        root=root,
        port=port,
        user=user,
        password=password,
        database=database,
        postmaster_pid=int(pid_file.read_text().splitlines()[0]),
    )
    try:
        env = {**os.environ, "PGPASSWORD": password}
        run([str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", user,
             "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", f"CREATE DATABASE {database}"],
            env)  # fmt: skip
    except BaseException:
        server.stop()
        raise
    return server
