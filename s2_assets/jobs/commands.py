"""The ``s2-assets jobs`` subcommands: list, show, validate, new, add-task, edit-task,
remove-task. Plain argparse over the job-file parser and writer; no Dagster.

``s2_assets.cli`` calls :func:`add_jobs_parser`; every subcommand sets ``handler`` (called
with the parsed arguments, returns the exit code). Problems in job files print to stdout
and give exit code 1; nothing is written when a change would make a file invalid.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import date
from pathlib import Path

from s2_assets.errors import JobFileError
from s2_assets.jobs import writer
from s2_assets.jobs.jobfile import jid_from_path, job_path, load_job, load_jobs
from s2_assets.jobs.model import JobFile, JobFileProblems, JobSettings, Task
from s2_assets.providers.base import PROVIDER_NAMES

# Called with a schedule name (``<jid>_schedule``); returns its status or None if unknown.
ScheduleStatus = Callable[[str], str | None]

_CELL_OPTIONS = (
    ("--date-min", "date_min", "empty, YYYY-MM-DD, today or today-N"),
    ("--date-max", "date_max", "empty, YYYY-MM-DD, today or today-N"),
    ("--max-clouds", "max_clouds", "highest cloud cover in percent (empty: 100)"),
    ("--provider", "provider", "provider name (empty: the job's provider)"),
    ("--filter-max-pb", "filter_max_pb", "True/False: newest baseline of an acquisition only"),
    ("--pb-min", "pb_min", "lowest processing baseline, e.g. 04.00"),
    ("--pb-max", "pb_max", "highest processing baseline"),
    ("--download", "download", "False, l1c or l2a"),
    ("--compute-l2a", "compute_l2a", "True/False: compute L2A with Sen2Cor"),
    ("--cloudmasks", "cloudmasks", "mask specs joined with '/', e.g. CM001/CM003-PRB20-ITER3"),
    ("--indices", "indices", "index names joined with '/', or All"),
    ("--remove", "remove", "rules joined with '/', e.g. l1c-new-cc80/l2a-all"),
    ("--comments", "comments", "free text without ';' or '#'"),
)


def add_jobs_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    get_jobs_dir: Callable[[], Path],
    get_schedule_status: ScheduleStatus | None = None,
) -> argparse.ArgumentParser:
    """Register ``jobs`` and its subcommands on an ``add_subparsers()`` object.

    Args:
        subparsers: the parent parser's subcommands.
        get_jobs_dir: returns the library's ``config/jobs`` folder (called when a command
            runs, never at registration).
        get_schedule_status: returns the status of a schedule by name (``<jid>_schedule``),
            for ``jobs list``; without it the status prints as ``unknown``.

    Returns:
        The ``jobs`` parser.
    """
    jobs = subparsers.add_parser("jobs", help="list, check and edit sen2chain job files")
    commands = jobs.add_subparsers(dest="jobs_command", required=True)

    def handler(run: Callable[[argparse.Namespace, Path], int]) -> Callable[..., int]:
        def call(args: argparse.Namespace) -> int:
            try:
                return run(args, get_jobs_dir())
            except JobFileProblems as error:
                print(error)
                return 1
            except JobFileError as error:
                print(f"error: {error}", file=sys.stderr)
                return 1

        return call

    def list_jobs(args: argparse.Namespace, jobs_dir: Path) -> int:
        return _list(jobs_dir, get_schedule_status)

    listing = commands.add_parser("list", help="the jobs, their timing and schedule status")
    listing.set_defaults(handler=handler(list_jobs))

    show = commands.add_parser("show", help="a job's settings and tasks")
    show.add_argument("jid")
    show.add_argument("--today", type=date.fromisoformat, help="resolve windows on this day")
    show.set_defaults(handler=handler(_show))

    validate = commands.add_parser("validate", help="check one job or all; exit 1 on problems")
    validate.add_argument("jid", nargs="?")
    validate.set_defaults(handler=handler(_validate))

    new = commands.add_parser("new", help="write a new job file from the template")
    new.add_argument("jid")
    new.add_argument("--timing", default="0 0 * * *", help="cron expression (default daily 0:00)")
    new.add_argument("--logs", action="store_true", help="write sen2chain's per-run log file")
    new.add_argument(
        "--provider",
        default="cop_dataspace",
        help="the job's provider, also written in the template row (default cop_dataspace)",
    )
    new.add_argument("--empty", action="store_true", help="leave out the 40KCB template row")
    new.set_defaults(handler=handler(_new))

    add = commands.add_parser("add-task", help="append a task row")
    add.add_argument("jid")
    add.add_argument("--tile", required=True, help="MGRS tile id, e.g. 40KCB")
    add.add_argument("--disabled", action="store_true", help="add the row disabled ('!')")
    _add_cell_options(add)
    add.set_defaults(handler=handler(_add_task))

    edit = commands.add_parser("edit-task", help="change cells of a task row")
    edit.add_argument("jid")
    edit.add_argument("task_id", type=int, help="0-based task id, as 'jobs show' prints")
    edit.add_argument("--tile", help="MGRS tile id, e.g. 40KCB")
    switch = edit.add_mutually_exclusive_group()
    switch.add_argument("--enable", action="store_true", help="remove the row's '!'")
    switch.add_argument("--disable", action="store_true", help="mark the row with '!'")
    _add_cell_options(edit)
    edit.set_defaults(handler=handler(_edit_task))

    remove = commands.add_parser("remove-task", help="delete a task row")
    remove.add_argument("jid")
    remove.add_argument("task_id", type=int)
    remove.set_defaults(handler=handler(_remove_task))
    return jobs


def main_jobs(
    argv: Sequence[str], jobs_dir: Path, *, get_schedule_status: ScheduleStatus | None = None
) -> int:
    """Run ``s2-assets jobs <argv>`` against ``jobs_dir`` and return the exit code."""
    parser = argparse.ArgumentParser(prog="s2-assets")
    commands = parser.add_subparsers(dest="command", required=True)
    add_jobs_parser(commands, lambda: jobs_dir, get_schedule_status)
    try:
        args = parser.parse_args(["jobs", *argv])
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return int(args.handler(args))


def _add_cell_options(parser: argparse.ArgumentParser) -> None:
    for flag, column, text in _CELL_OPTIONS:
        parser.add_argument(flag, dest=column, metavar="VALUE", help=text)


def _cells(args: argparse.Namespace) -> dict[str, str]:
    """The cell values given on the command line, by column name."""
    cells = {column: getattr(args, column) for _, column, _ in _CELL_OPTIONS}
    return {column: value for column, value in cells.items() if value is not None}


def _existing(jobs_dir: Path, jid: str) -> JobFile:
    path = job_path(jobs_dir, jid)
    if not path.is_file():
        known = sorted(jid_from_path(p) for p in jobs_dir.glob("job_*.cfg"))
        raise JobFileError(f"no job {jid!r} in {jobs_dir}; existing: {', '.join(known) or 'none'}")
    return load_job(path, providers=PROVIDER_NAMES)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _list(jobs_dir: Path, get_status: ScheduleStatus | None) -> int:
    jobs, errors = load_jobs(jobs_dir)
    header = ["job_id", "config_file", "logging", "timing", "schedule_status", "cron_timing"]
    rows: list[list[str]] = [[*header, "problems"]]
    entries: list[tuple[str, JobFile | JobFileError]] = [(job.jid, job) for job in jobs]
    for error in errors:
        path = error.path if isinstance(error, JobFileProblems) else Path("?")
        entries.append((jid_from_path(path), error))
    for jid, entry in sorted(entries, key=lambda item: item[0]):
        status = (get_status(f"{jid}_schedule") if get_status else None) or "unknown"
        if isinstance(entry, JobFile):
            timing = entry.settings.timing
            rows.append([jid, "True", str(entry.settings.logs), timing, status, timing, "0"])
        else:
            count = len(entry.problems) if isinstance(entry, JobFileProblems) else 1
            rows.append([jid, "True", "-", "-", status, "-", str(count)])
    if len(rows) == 1:
        print(f"no job files (job_<jid>.cfg) in {jobs_dir}")
        return 0
    print(_table(rows))
    if errors:
        print(f"\n{len(errors)} job file(s) have problems; see 's2-assets jobs validate'")
    return 0


def _describe(task: Task, today: date) -> list[str]:
    first, last = task.window(today)
    low = "any" if task.pb_min is None else f"{task.pb_min:05.2f}"
    high = "any" if task.pb_max is None else f"{task.pb_max:05.2f}"
    state = "" if task.enabled else "  (disabled)"
    return [
        f"[{task.index}] {task.tile}  line {task.line}{state}",
        f"    window      {first}..{last}  (date_min {str(task.date_min) or 'open'}, "
        f"date_max {str(task.date_max) or 'open'})",
        f"    filters     max_clouds {task.max_clouds}  provider {task.provider}  "
        f"filter_max_pb {task.filter_max_pb}  baselines {low}..{high}",
        f"    produce     download {task.download or 'no'}  compute_l2a {task.compute_l2a}",
        f"    cloudmasks  {'/'.join(str(m) for m in task.cloudmasks) or '-'}",
        f"    indices     {'/'.join(task.indices) or '-'}",
        f"    remove      {'/'.join(str(r) for r in task.remove) or '-'}",
        f"    comments    {task.comments or '-'}",
    ]


def _show(args: argparse.Namespace, jobs_dir: Path) -> int:
    job = _existing(jobs_dir, args.jid)
    today = args.today or date.today()
    print(f"job {job.jid}  ({job.path})")
    settings = job.settings
    for item in fields(settings):
        print(f"  {item.name} = {getattr(settings, item.name)}")
    print(f"tasks ({len(job.tasks)}; windows as of {today}):")
    for task in job.tasks:
        print("\n".join(f"  {line}" for line in _describe(task, today)))
    return 0


def _validate(args: argparse.Namespace, jobs_dir: Path) -> int:
    jobs: list[JobFile]
    errors: list[JobFileError]
    if args.jid:
        jobs, errors = [_existing(jobs_dir, args.jid)], []
    else:
        jobs, errors = load_jobs(jobs_dir, providers=PROVIDER_NAMES)
    for job in jobs:
        print(f"ok  {job.path}: {len(job.tasks)} task(s)")
    for error in errors:
        print(error)
    return 1 if errors else 0


def _new(args: argparse.Namespace, jobs_dir: Path) -> int:
    # A new job cleans nothing until asked to: the library clean removes files.
    settings = JobSettings(
        logs=args.logs,
        timing=args.timing,
        provider=args.provider,
        clean_before=False,
        clean_after=False,
    )
    job = writer.new_job(jobs_dir, args.jid, settings=settings, template_row=not args.empty)
    print(f"wrote {job.path} ({len(job.tasks)} task(s))")
    return 0


def _add_task(args: argparse.Namespace, jobs_dir: Path) -> int:
    cells = {"tile": ("!" if args.disabled else "") + args.tile, **_cells(args)}
    job = writer.add_task(_existing(jobs_dir, args.jid), cells)
    print(f"added task {job.tasks[-1].index} to {job.path}")
    return 0


def _edit_task(args: argparse.Namespace, jobs_dir: Path) -> int:
    job = _existing(jobs_dir, args.jid)
    cells = _cells(args)
    if args.tile is not None or args.enable or args.disable:
        current = job.tasks[args.task_id] if 0 <= args.task_id < len(job.tasks) else None
        tile = args.tile if args.tile is not None else (current.tile if current else "")
        enabled = current.enabled if current and not (args.enable or args.disable) else args.enable
        cells["tile"] = tile if enabled else f"!{tile}"
    if not cells:
        raise JobFileError("nothing to change; give at least one --<column> VALUE")
    job = writer.edit_task(job, args.task_id, cells)
    print(f"edited task {args.task_id} of {job.path}")
    return 0


def _remove_task(args: argparse.Namespace, jobs_dir: Path) -> int:
    job = writer.remove_task(_existing(jobs_dir, args.jid), args.task_id)
    print(f"removed task {args.task_id} from {job.path} ({len(job.tasks)} left)")
    return 0
