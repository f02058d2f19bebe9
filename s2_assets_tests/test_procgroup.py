"""External programs die with their run (s2_assets.sen2cor.procgroup): a run worker killed with
SIGKILL while the Sen2Cor stand-in hangs leaves no process of it behind, and the Sen2Cor slot
it held is free only once they are all gone."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from s2_assets.demo.products import build_safe
from s2_assets.sen2cor.procgroup import run_in_own_group
from s2_assets.sen2cor.slots import slot
from s2_assets_tests.sen2cor_standin import MODE_VAR, PIDFILE_VAR, write_launcher

# The run worker: takes the one Sen2Cor slot and runs Sen2Cor as the l2a asset does.
WORKER = """
import sys
from pathlib import Path
from s2_assets.sen2cor.runner import Sen2CorSettings, discover_install, run_sen2cor
from s2_assets.sen2cor.slots import slot
slots, l1c, scratch, launcher = (Path(a) for a in sys.argv[1:5])
with slot(slots, 1, poll_s=0.05) as held:
    run_sen2cor(l1c, scratch, [discover_install(launcher, "02.12.03")],
                Sen2CorSettings(timeout_s=600), hold_fds=(held.fd,))
"""


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def _group(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != b"Z":
                members.append(int(name))
    return members


def _wait_for(predicate: object, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _slot_free(folder: Path) -> bool:
    with open(folder / "slot-0.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


@pytest.fixture
def pids(tmp_path: Path) -> Iterator[Path]:
    """The stand-in's pid file; whatever is still running afterwards is killed."""
    path = tmp_path / "pids"
    yield path
    for pid in [int(p) for p in path.read_text().split()] if path.exists() else []:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_sigkilled_worker_leaves_no_sen2cor_and_frees_the_slot_only_then(
    tmp_path: Path, pids: Path
) -> None:
    l1c = build_safe(
        tmp_path / "lib", level="L1C", sensing=datetime(2024, 1, 1, 6, 35, 11, tzinfo=UTC), size=12
    )
    launcher = write_launcher(tmp_path / "bin")
    slots = tmp_path / "slots"
    env = {**os.environ, MODE_VAR: "hang", PIDFILE_VAR: str(pids)}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(slots), str(l1c), str(tmp_path / "TEMP"), str(launcher)],
        env=env,
    )
    try:
        # The stand-in records itself and the child it forked once it hangs.
        assert _wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2, 60)
        leader, child = (int(p) for p in pids.read_text().split())
        assert os.getpgid(child) == leader
        group = _group(leader)
        assert {leader, child} < set(group)  # and the watchdog
        assert not _slot_free(slots)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    outcome: dict[str, object] = {}

    def next_run() -> None:
        with slot(slots, 1, poll_s=0.02):
            outcome["alive_when_slot_taken"] = [pid for pid in group if _alive(pid)]

    taker = threading.Thread(target=next_run, daemon=True)
    taker.start()
    taker.join(timeout=10)
    assert not taker.is_alive(), "the slot never came free"
    assert outcome["alive_when_slot_taken"] == []
    assert _group(leader) == []


def test_the_program_holds_the_lock_it_inherits(tmp_path: Path) -> None:
    slots = tmp_path / "slots"
    slots.mkdir()
    lock = os.open(slots / "slot-0.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    state: dict[str, object] = {}

    def run() -> None:
        state["code"] = run_in_own_group(
            [sys.executable, "-c", "import time; time.sleep(1.5)"],
            cwd=tmp_path, log_path=tmp_path / "log", timeout_s=30, kill_grace_s=1,
            hold_fds=(lock,),
        )  # fmt: skip

    runner = threading.Thread(target=run)
    runner.start()
    time.sleep(0.5)
    os.close(lock)  # as a killed worker's descriptor is: the program still holds the lock
    assert not _slot_free(slots)
    runner.join()
    assert state["code"] == 0
    assert _slot_free(slots)


def test_a_normal_run_leaves_no_watchdog(tmp_path: Path) -> None:
    script = "import os; print(os.getpgid(0), flush=True)"
    code = run_in_own_group(
        [sys.executable, "-c", script], cwd=tmp_path, log_path=tmp_path / "log",
        timeout_s=30, kill_grace_s=1,
    )  # fmt: skip
    assert code == 0
    pgid = int((tmp_path / "log").read_text())
    assert pgid != os.getpgid(0)
    assert _group(pgid) == []
