"""Per-partition processing options: which job task governs a (tile, date), or the defaults.

A run started by a job's schedule or sensor carries the tag ``s2/job``; a backfill started by
hand from the UI carries none. Either way the options for a (tile, day) come from the first
enabled task (by job id, then row) that lists the tile and whose window holds the day; a tile
that no job lists gets ``DEFAULT_OPTIONS``. Pure: no Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from s2_assets.jobs.model import JobFile, Task
from s2_assets.providers.base import ProductRecord, filter_records
from s2_assets.specs import DEFAULT_MASK_SPEC, RemoveRule

JOB_TAG = "s2/job"  # run tag naming the job file whose tasks govern a run
TASK_TAG = "s2/task"  # the task rows (0-based, comma-separated) a backfill serves


@dataclass(frozen=True)
class TaskOptions:
    """What to fetch and produce for one (tile, day), and under which filters."""

    job: str | None = None
    task: int | None = None
    provider: str | None = None
    max_cloud: float = 100.0
    pb_min: float | None = None
    pb_max: float | None = None
    filter_max_pb: bool = True
    download: str | None = "l1c"
    compute_l2a: bool = False
    cloudmasks: tuple[str, ...] = (DEFAULT_MASK_SPEC,)
    indices: tuple[str, ...] = ()
    remove: tuple[RemoveRule, ...] = field(default=())
    copy_sideproducts: bool = False
    tries: int = 1
    sleep_minutes: int = 0
    nb_proc: int = 8
    logs: bool = False
    clean_after: bool = False

    @classmethod
    def from_task(cls, job: JobFile, task: Task) -> TaskOptions:
        return cls(
            job=job.jid,
            task=task.index,
            provider=task.provider,
            max_cloud=float(task.max_clouds),
            pb_min=task.pb_min,
            pb_max=task.pb_max,
            filter_max_pb=task.filter_max_pb,
            download=task.download,
            compute_l2a=task.compute_l2a,
            cloudmasks=tuple(str(spec) for spec in task.cloudmasks),
            indices=task.indices,
            remove=task.remove,
            copy_sideproducts=job.settings.copy_l2a_sideproducts,
            tries=job.settings.tries,
            sleep_minutes=job.settings.sleep,
            nb_proc=job.settings.nb_proc,
            logs=job.settings.logs,
            clean_after=job.settings.clean_after,
        )

    @property
    def levels(self) -> tuple[str, ...]:
        """Product levels this task takes from the provider: ``download``'s. (``compute_l2a``
        makes L2A from the L1C it downloads or, with ``download = l2a`` or none, from the L1C
        already in the library: it never downloads L1C on its own.)"""
        wanted = {self.download} if self.download else set()
        return tuple(level.upper() for level in sorted(wanted))

    @property
    def asset_names(self) -> tuple[str, ...]:
        """The assets a backfill for this task materializes (before filtering to what exists)."""
        names = [level.lower() for level in self.levels]
        if self.compute_l2a and "l2a" not in names:
            names.append("l2a")
        produces_l2a = "l2a" in names
        if produces_l2a and self.cloudmasks:
            names.append("cloudmask")
        if produces_l2a:
            names.extend(index.lower() for index in self.indices)
        if self.remove or self.clean_after:
            names.append("housekeeping")
        return tuple(names)

    def select(self, records: Sequence[ProductRecord]) -> list[ProductRecord]:
        """The products this task keeps among ``records``."""
        chosen = [r for r in records if self.provider is None or r.provider == self.provider]
        return filter_records(
            chosen,
            max_cloud=self.max_cloud,
            pb_min=self.pb_min,
            pb_max=self.pb_max,
            keep_max_baseline=self.filter_max_pb,
        )


DEFAULT_OPTIONS = TaskOptions()


def options_for(
    jobs: Sequence[JobFile], tile: str, day: date, *, today: date, job: str | None = None
) -> TaskOptions:
    """The options governing ``(tile, day)``: see the module docstring.

    With ``job`` given, only that job's tasks count; a tile it lists outside every window
    still takes its first task's options (the run was asked for by that job).
    """
    candidates = [j for j in jobs if job is None or j.jid == job]
    fallback: TaskOptions | None = None
    for job_file in sorted(candidates, key=lambda j: j.jid):
        for task in job_file.enabled_tasks:
            if task.tile != tile:
                continue
            start, end = task.window(today)
            options = TaskOptions.from_task(job_file, task)
            if start <= day <= end:
                return options
            fallback = fallback or options
    return fallback if job is not None and fallback is not None else DEFAULT_OPTIONS
