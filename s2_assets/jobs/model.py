"""The typed model of a sen2chain job file: settings, tasks, the file, and its problems. Pure.

:mod:`s2_assets.jobs.jobfile` builds these from a file's text; the Dagster side reads them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

from s2_assets.errors import JobFileError
from s2_assets.jobs.cells import DateSpec, RemoveRule
from s2_assets.products import baseline_number
from s2_assets.specs import MaskSpec

DEFAULT_PROVIDER = "cop_dataspace"
DEFAULT_TIMING = "0 0 * * *"


@dataclass(frozen=True)
class JobSettings:
    """The job-wide ``key = value`` settings, with sen2chain's defaults.

    ``tries`` search-and-download rounds for offline products, ``sleep`` minutes between
    rounds; ``nb_proc`` bounds concurrent work; ``clean_before``/``clean_after`` run the
    library clean around the job; ``process_by_line`` > 0 splits the rows into chunks of
    about that many (see :func:`task_chunks`); 0 keeps them together.
    """

    logs: bool = False
    timing: str = DEFAULT_TIMING
    provider: str = DEFAULT_PROVIDER
    tries: int = 1
    sleep: int = 0
    nb_proc: int = 8
    copy_l2a_sideproducts: bool = False
    clean_before: bool = True
    clean_after: bool = True
    process_by_line: int = 0

    def workers(self, cpus: int) -> int:
        """sen2chain's effective worker count: ``nb_proc`` capped at one less than ``cpus``."""
        return max(1, min(self.nb_proc, cpus - 1))


@dataclass(frozen=True)
class Task:
    """One row of the task table: what to fetch and produce for one tile and date window.

    ``index`` is sen2chain's ``task_id`` (0-based over all rows, disabled ones included),
    ``line`` the 1-based line in the file. ``enabled`` is False for a row whose tile cell
    holds ``!``. ``provider`` is already resolved (an empty cell takes the job's provider).
    """

    index: int
    line: int
    tile: str
    date_min: DateSpec
    date_max: DateSpec
    enabled: bool = True
    max_clouds: int = 100
    provider: str = DEFAULT_PROVIDER
    filter_max_pb: bool = False
    pb_min: float | None = None
    pb_max: float | None = None
    download: Literal["l1c", "l2a"] | None = None
    compute_l2a: bool = False
    cloudmasks: tuple[MaskSpec, ...] = ()
    indices: tuple[str, ...] = ()
    remove: tuple[RemoveRule, ...] = ()
    comments: str = ""

    def window(self, today: date) -> tuple[date, date]:
        """The inclusive ``(first, last)`` sensing dates this task covers on ``today``."""
        return self.date_min.resolve(today), self.date_max.resolve(today)

    def accepts_baseline(self, baseline: str) -> bool:
        """True when a processing baseline (``'05.10'``) is within ``pb_min..pb_max``."""
        number = baseline_number(baseline)
        low_ok = self.pb_min is None or number >= self.pb_min
        return low_ok and (self.pb_max is None or number <= self.pb_max)


@dataclass(frozen=True)
class JobFile:
    """A parsed job file. ``text`` is its exact content, which the writer edits line-wise.

    ``columns`` are the table's canonical column names in file order and ``header_line``
    the table header's 1-based line number.
    """

    jid: str
    path: Path
    settings: JobSettings
    tasks: tuple[Task, ...]
    columns: tuple[str, ...]
    header_line: int
    text: str = field(repr=False)

    @property
    def enabled_tasks(self) -> tuple[Task, ...]:
        return tuple(task for task in self.tasks if task.enabled)

    @property
    def tiles(self) -> tuple[str, ...]:
        """The distinct tiles of the enabled tasks, sorted."""
        return tuple(sorted({task.tile for task in self.enabled_tasks}))


@dataclass(frozen=True)
class JobProblem:
    """One thing wrong in a job file, located as precisely as the fault allows.

    ``column`` names the table column (with its 1-based ``position`` among the cells) or,
    when ``position`` is None, the setting key at fault.
    """

    path: Path
    line: int | None
    message: str
    column: str | None = None
    position: int | None = None
    value: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        what = ""
        if self.column is not None:
            if self.position is None:
                what = f" setting {self.column!r}"
            else:
                what = f" column {self.column!r} (field {self.position})"
        if self.value is not None:
            what += f" value {self.value!r}"
        return f"{where}:{what}: {self.message}" if what else f"{where}: {self.message}"


class JobFileProblems(JobFileError):
    """A job file has one or more problems; ``problems`` lists every one of them."""

    def __init__(
        self, path: Path, problems: Collection[JobProblem], *, intro: str | None = None
    ) -> None:
        self.path = path
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        plural = "s" * (count != 1)
        intro = intro or f"job file {path} has"
        super().__init__(f"{intro} {count} problem{plural}:\n{lines}")


def task_chunks(tasks: tuple[Task, ...], process_by_line: int) -> list[tuple[Task, ...]]:
    """Split tasks as sen2chain's ``process_by_line`` did: ``ceil(n/k)`` near-equal chunks.

    0 keeps every task in one chunk; 7 tasks with k=3 give chunks of 3, 2 and 2.
    """
    if not tasks:
        return []
    if process_by_line <= 0:
        return [tasks]
    count = -(-len(tasks) // process_by_line)
    size, extra = divmod(len(tasks), count)
    chunks: list[tuple[Task, ...]] = []
    start = 0
    for number in range(count):
        end = start + size + (1 if number < extra else 0)
        chunks.append(tasks[start:end])
        start = end
    return chunks
