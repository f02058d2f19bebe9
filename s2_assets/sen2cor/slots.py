"""A machine-wide bound on concurrent heavy work (Sen2Cor): N lock files, one held per worker.

Dagster pools bound steps; Sen2Cor runs inside the ``l2a`` step, which also downloads and so
sits in the ``download`` pool. This bounds the Sen2Cor processes themselves, across runs and
processes on one machine, with ``flock``. The lock belongs to the open file, not to the
process: the worker hands the file to the Sen2Cor it starts (``Slot.fd``), so the slot is
free only when the worker AND that Sen2Cor (and its watchdog, ``s2_assets.sen2cor.procgroup``) are
gone. A Sen2Cor orphaned by a killed worker keeps counting against the slots until it dies.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Slot:
    """A slot held: its number and the descriptor of its locked file (to pass to children)."""

    index: int
    fd: int


def default_sen2cor_slots() -> int:
    """About one Sen2Cor per 4 GB of memory, at least one."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 1
    return max(1, memory // (4 * 1024**3))


@contextmanager
def slot(
    folder: Path,
    limit: int,
    *,
    poll_s: float = 5.0,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[Slot]:
    """Hold one of ``limit`` slots under ``folder`` for the duration; waits while all are taken."""
    folder.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for index in range(max(1, limit)):
            handle = open(folder / f"slot-{index}.lock", "a+")  # noqa: SIM115 (held open)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield Slot(index, handle.fileno())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if not waited and on_wait is not None:
            on_wait()
            waited = True
        time.sleep(poll_s)
