"""The options of one asset run, per (tile, date): the governing job task, read once per run.

Every partitioned asset (products, masks and indices, composites, housekeeping) asks the
same question of each key it materializes: which enabled task of which job file governs it
(:func:`s2_assets.jobs.options.options_for`). A key only a broken job file governs fails
rather than run with defaults. The run also carries what the ``-new`` remove rules mean by
"this run" (the backfill id, else the run id) and sen2chain's per-run log when the job has
``logs = True``.
"""

from datetime import UTC, datetime

import dagster as dg

from s2_assets.jobs.jobfile import load_jobs
from s2_assets.jobs.joblog import JobLog
from s2_assets.jobs.options import JOB_TAG, TaskOptions, options_for
from s2_assets.library.tree import Library
from s2_assets.partitions import TileDate


class RunOptions:
    """Options per (tile, date) for one run: job files read once, task looked up per key,
    and sen2chain's per-run log file when the run's job has ``logs = True``."""

    def __init__(self, context: dg.AssetExecutionContext, lib: Library) -> None:
        self.jobs, errors = load_jobs(lib.jobs_dir)
        for error in errors:
            context.log.warning(str(error))
        self.broken = errors
        self.job = context.run.tags.get(JOB_TAG)
        # What the -new remove rules mean by "this run": the backfill, else the run.
        self.run = context.run.tags.get("dagster/backfill") or context.run.run_id
        self.today = datetime.now(UTC).date()
        job_file = next((j for j in self.jobs if j.jid == self.job), None)
        self.log: JobLog | None = None
        self.started = _run_start(context)
        if job_file is not None and job_file.settings.logs:
            started = datetime.fromtimestamp(self.started, UTC)
            self.log = JobLog(lib.logs_dir, job_file.jid, context.run.run_id, started)

    def __call__(self, key: TileDate) -> TaskOptions:
        """The governing task's options; a partition only a broken job file governs fails.

        Raises:
            dg.Failure: naming the broken file's error (its tiles never take the defaults).
        """
        options = options_for(self.jobs, key.tile, key.date, today=self.today, job=self.job)
        if options.job is None:
            for error in self.broken:
                path = getattr(error, "path", None)
                if broken_file_governs(error, key.tile, self.job):
                    raise dg.Failure(
                        f"{key}: governed by the broken job file {path}, not run with defaults: "
                        f"{error}"
                    )
        return options

    def write(self, message: str) -> None:
        if self.log is not None:
            self.log.write(message)


def broken_file_governs(error: Exception, tile: str, job: str | None) -> bool:
    """Whether the broken job file of ``error`` is the one asked for (``job``) or, for a run no
    job started, lists ``tile`` (its text names it outside comments)."""
    path = getattr(error, "path", None)
    if path is None:
        return False
    from s2_assets.jobs.jobfile import jid_from_path
    from s2_assets.jobs.tablefile import split_comment

    if job is not None:
        return jid_from_path(path) == job
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(tile in split_comment(line).upper() for line in text.splitlines())


def _run_start(context: dg.AssetExecutionContext) -> float:
    record = context.instance.get_run_record_by_id(context.run.run_id)
    start = record.start_time if record is not None else None
    return start or datetime.now(UTC).timestamp()
