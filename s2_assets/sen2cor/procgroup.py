"""Run an external program (Sen2Cor) so that it and every child it forks die with the run.

The program leads a new process group. Three things end that group, whatever ends the run:

- the run itself, on timeout or when the program exits: SIGTERM, a grace period, then
  SIGKILL to the whole group before the leader is reaped (while the unreaped leader holds
  the group id, the id cannot be reused, so the kill never hits a stranger);
- the kernel, when the run worker dies in any way, SIGKILL included: the leader is started
  with ``PR_SET_PDEATHSIG`` = SIGKILL (Linux ``prctl``);
- a watchdog, for the children the leader forked (the parent-death signal is not
  inherited): a tiny Python process inside the group that blocks on a pipe whose only
  writer is the run worker. When the worker dies the kernel closes the pipe, the watchdog
  wakes, SIGKILLs every other member of the group until none is alive, and exits.

Files passed in ``hold_fds`` (a Sen2Cor slot's ``flock``, see ``s2_assets.sen2cor.slots``) are
inherited by the leader and the watchdog, so a slot stays taken until the last process of
the group is gone, even when the worker died first.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from s2_assets.errors import S2AssetsError

_PR_SET_PDEATHSIG = 1
# Runs as `python -I -S -c`: no site, no imports of ours, so it starts in a few ms.
# argv: group id, pipe fd. Members are found in /proc by their process group; zombies
# (state Z) are dead already. New children may appear while we kill, hence the loop.
WATCHDOG = """
import os, signal, sys, time
pgid, fd = int(sys.argv[1]), int(sys.argv[2])
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, signal.SIG_IGN)
while os.read(fd, 64):
    pass
me = os.getpid()
def alive():
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open("/proc/" + name + "/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            found.append(int(name))
    return found
for _ in range(200):
    members = alive()
    if not members:
        break
    for pid in members:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.05)
"""


class ProcessStartError(S2AssetsError):
    """The external program could not be started."""


def _parent_death_signal() -> Callable[..., object] | None:
    """``prctl`` from libc, looked up before any fork (nothing is loaded in the child)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., object] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def run_in_own_group(
    argv: Sequence[str],
    *,
    cwd: Path,
    log_path: Path,
    timeout_s: float,
    kill_grace_s: float,
    hold_fds: Sequence[int] = (),
) -> int | None:
    """Run ``argv`` as the leader of a new process group; its exit code, or None on timeout.

    Output (stdout and stderr) goes to ``log_path``. ``hold_fds`` are inherited by the
    program and its watchdog (see the module docstring).

    Raises:
        ProcessStartError: the program or its watchdog could not be started.
    """
    prctl = _parent_death_signal()
    worker = os.getpid()

    def in_child() -> None:
        # Runs between fork and exec: only the C call and two syscalls, no imports.
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != worker:  # the worker died before prctl took effect
            os._exit(128 + int(signal.SIGKILL))

    with log_path.open("wb") as log_file:
        try:
            process = subprocess.Popen(
                list(argv),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=in_child,
                pass_fds=tuple(hold_fds),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise ProcessStartError(f"cannot start {argv[0]}: {exc}") from exc
    try:
        watchdog, pipe = _start_watchdog(process.pid, hold_fds)
    except BaseException:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()
        raise
    timed_out = False
    try:
        if not _wait_exited(process.pid, timeout_s):
            timed_out = True
            _signal_group(process.pid, signal.SIGTERM)
            _wait_exited(process.pid, kill_grace_s)
    finally:
        _signal_group(process.pid, signal.SIGKILL)  # the watchdog goes with them
        code = process.wait()
        watchdog.wait()
        os.close(pipe)
    return None if timed_out else code


def _start_watchdog(pgid: int, hold_fds: Sequence[int]) -> tuple[subprocess.Popen[bytes], int]:
    """Start the watchdog inside group ``pgid``; return it and the pipe's write end, which
    only this process holds (``os.pipe`` fds are not inherited)."""
    read_end, write_end = os.pipe()
    try:
        watchdog = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", WATCHDOG, str(pgid), str(read_end)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=pgid,
            pass_fds=(read_end, *hold_fds),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        os.close(write_end)
        raise ProcessStartError(f"cannot start the process watchdog: {exc}") from exc
    finally:
        os.close(read_end)
    return watchdog, write_end


def _wait_exited(pid: int, timeout_s: float) -> bool:
    """Wait until ``pid`` has exited, without reaping it (WNOWAIT); False on timeout."""
    deadline = time.monotonic() + timeout_s
    pause = 0.02
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        # Quick for short runs, one wake-up a second for two-hour ones.
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 1.0)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
