"""Writing job files back: a new job from the template, and task edits. Pure.

Edits change only the table: the touched row's edited cells (its other cells, spacing and
trailing comment stay as written), an added or removed row line, and, when a value goes
into a column the file lacks, that column. Every other line, comments included, is kept
byte for byte, so the file stays in the format sen2chain reads. Each change is parsed and
validated before anything is written, refused if the file changed on disk since it was
loaded, and written beside the file then renamed over it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from s2_assets.errors import JobFileError
from s2_assets.jobs.jobfile import (
    COLUMNS,
    jid_collision,
    jid_problem,
    job_path,
    parse_job_text,
)
from s2_assets.jobs.model import DEFAULT_PROVIDER, JobFile, JobFileProblems, JobSettings, Task
from s2_assets.jobs.tablefile import split_comment

# sen2chain's template row, with cop_dataspace (its actual default provider, D11) in place
# of the retired PEPS it names.
TEMPLATE_ROW: dict[str, str] = {
    "tile": "40KCB",
    "date_min": "today-5",
    "date_max": "today",
    "max_clouds": "100",
    "provider": DEFAULT_PROVIDER,
    "filter_max_pb": "True",
    "download": "False",
    "compute_l2a": "False",
    "cloudmasks": "False",
    "indices": "False",
    "remove": "False",
    "comments": "Init line sur La Réunion",
}

_DOCUMENTATION = """\
# sen2chain processing job, read by s2-assets and by sen2chain.
#
# Settings (key = value):
#   logs                   True/False: also write logs/job_<jid>/job_<jid>_run_<stamp>.log
#   timing                 cron expression (minute hour day month weekday) of <jid>_schedule
#   provider               provider of the rows whose provider cell is empty
#   tries                  search-and-download rounds for products that are offline
#   sleep                  minutes to wait between two rounds
#   nb_proc                at most this many products processed at once
#   copy_L2A_sideproducts  True/False: copy SCL and cloud probability next to the masks
#   clean_before           True/False: clean the job's tiles in the library before a run
#   clean_after            True/False: the same after a run
#   process_by_line        0: all rows together; k > 0: the rows in chunks of about k
#
# Tasks: one row per task, cells separated by ';' (comments hold no ';' and no '#'):
#   tile           MGRS tile id such as 40KCB; a '!' in the cell disables the row
#   date_min       empty (2015-01-01), YYYY-MM-DD, today or today-N
#   date_max       empty (no end), YYYY-MM-DD, today or today-N; both ends are included
#   max_clouds     empty (100) or the highest scene cloud cover in percent
#   provider       empty (the provider setting) or a provider name such as cop_dataspace
#   filter_max_pb  True/False: keep only the newest processing baseline of an acquisition
#   pb_min         empty or the lowest processing baseline to use, such as 04.00
#   pb_max         empty or the highest processing baseline to use
#   download       False, l1c (or True) or l2a
#   compute_l2a    True/False: compute the L2A from the L1C with Sen2Cor
#   cloudmasks     False, or masks joined with '/': CM001, CM002-B11, CM003-PRB<p>-ITER<n>,
#                  CM004-CSH<0|1>-CMP<0|1>-CHP<0|1>-TCI<0|1>-ITER<n>
#   indices        False, All, or names joined with '/': NDVI, NDWIMCF, NDWIGAO, MNDWI, NDRE,
#                  IRECI, BIGR, BIRNIR, BIBG, EVI, NBR, NDBI
#   remove         False, or rules joined with '/': l1c-new, l1c-all, l2a-new, l2a-all, each
#                  optionally with -ccNN (only products with cloud cover >= NN %)
#   comments       free text
"""
_FORBIDDEN = (";", "#", "\n", "\r")


def _bool(value: bool) -> str:
    return "True" if value else "False"


def render_settings(settings: JobSettings) -> str:
    """The ``key = value`` block for ``settings``, keys spelled as sen2chain writes them."""
    pairs = (
        ("logs", _bool(settings.logs)),
        ("timing", settings.timing),
        ("provider", settings.provider),
        ("tries", str(settings.tries)),
        ("sleep", str(settings.sleep)),
        ("nb_proc", str(settings.nb_proc)),
        ("copy_L2A_sideproducts", _bool(settings.copy_l2a_sideproducts)),
        ("clean_before", _bool(settings.clean_before)),
        ("clean_after", _bool(settings.clean_after)),
        ("process_by_line", str(settings.process_by_line)),
    )
    return "".join(f"{key} = {value}\n" for key, value in pairs)


def job_text(settings: JobSettings, columns: Sequence[str], rows: Sequence[str] = ()) -> str:
    """A job file's text: the settings, a blank line, the table header naming ``columns``,
    then ``rows`` (each a row's cells joined with ``;``), every line ending in a newline."""
    return (
        render_settings(settings)
        + "\n"
        + "".join(f"{line}\n" for line in (";".join(columns), *rows))
    )


def task_cells(task: Task) -> dict[str, str]:
    """A task as cell text for every column; parsing the cells gives the task back."""
    return {
        "tile": task.tile if task.enabled else f"!{task.tile}",
        "date_min": str(task.date_min),
        "date_max": str(task.date_max),
        "max_clouds": str(task.max_clouds),
        "provider": task.provider,
        "filter_max_pb": _bool(task.filter_max_pb),
        "pb_min": "" if task.pb_min is None else f"{task.pb_min:05.2f}",
        "pb_max": "" if task.pb_max is None else f"{task.pb_max:05.2f}",
        "download": task.download or "False",
        "compute_l2a": _bool(task.compute_l2a),
        "cloudmasks": "/".join(str(spec) for spec in task.cloudmasks) or "False",
        "indices": "/".join(task.indices) or "False",
        "remove": "/".join(str(rule) for rule in task.remove) or "False",
        "comments": task.comments,
    }


def new_job(
    jobs_dir: Path,
    jid: str,
    *,
    settings: JobSettings | None = None,
    template_row: bool = True,
) -> JobFile:
    """Write a new job file: documentation comments, settings, header, template row.

    Args:
        jobs_dir: the library's ``config/jobs`` folder (created if missing).
        jid: the job id; letters, digits and ``_``.
        settings: the settings to write; sen2chain's defaults when None.
        template_row: write sen2chain's ``40KCB`` example row (as sen2chain does), with
            the provider of ``settings``.

    Raises:
        JobFileError: if the jid is invalid or the job already exists.
    """
    problem = jid_problem(jid) or jid_collision(jobs_dir, jid)
    if problem:
        raise JobFileError(problem)
    path = job_path(jobs_dir, jid)
    if path.exists():
        raise JobFileError(f"job {jid!r} already exists: {path}; edit it or pick another id")
    settings = settings or JobSettings()
    # The template row names the job's provider, so the job's first run goes where it says.
    row = {**TEMPLATE_ROW, "provider": settings.provider}
    rows = [";".join(row.get(c, "") for c in COLUMNS)] if template_row else []
    text = f"{_DOCUMENTATION}\n{job_text(settings, COLUMNS, rows)}"
    job = _validated(text, path)
    jobs_dir.mkdir(parents=True, exist_ok=True)
    try:
        _write_atomic(path, text, exclusive=True)
    except FileExistsError:
        raise JobFileError(
            f"job {jid!r} already exists: {path}; edit it or pick another id"
        ) from None
    return job


def save_job(job: JobFile) -> JobFile:
    """Write ``job.text`` to ``job.path`` atomically (a load/save/load round trip is exact)."""
    _write_atomic(job.path, job.text)
    return job


def add_task(job: JobFile, cells: Mapping[str, str]) -> JobFile:
    """Append a task row after the last one. Columns not given are left empty.

    Args:
        job: the job as loaded; refused if the file changed since.
        cells: cell text by canonical column name; ``tile`` is required.

    Raises:
        JobFileError: for an unknown column, a cell holding ``;``/``#``, a changed file, or
            (``JobFileProblems``) a row the parser rejects; nothing is written then.
    """
    if not cells.get("tile", "").strip():
        raise JobFileError(f"{job.path}: a new task needs a tile, e.g. tile=40KCB")
    lines, columns = _with_columns(job, cells)
    newline = "\r" if lines[job.header_line - 1].endswith("\r") else ""
    last = job.tasks[-1].line if job.tasks else job.header_line
    lines.insert(last, ";".join(cells.get(name, "") for name in columns) + newline)
    return _commit(job, lines)


def edit_task(job: JobFile, task_id: int, cells: Mapping[str, str]) -> JobFile:
    """Set some cells of task ``task_id`` (sen2chain's 0-based task index).

    Raises:
        JobFileError: as :func:`add_task`, and for a task id that does not exist.
    """
    task = _task(job, task_id)
    lines, columns = _with_columns(job, cells)
    lines[task.line - 1] = _set_cells(lines[task.line - 1], columns, cells)
    return _commit(job, lines)


def remove_task(job: JobFile, task_id: int) -> JobFile:
    """Delete the row of task ``task_id``; later tasks' ids shift down by one.

    Raises:
        JobFileError: for a task id that does not exist or a file changed since loading.
    """
    task = _task(job, task_id)
    lines = job.text.split("\n")
    del lines[task.line - 1]
    return _commit(job, lines)


def _task(job: JobFile, task_id: int) -> Task:
    if not 0 <= task_id < len(job.tasks):
        valid = f"0..{len(job.tasks) - 1}" if job.tasks else "none, the job has no task"
        raise JobFileError(f"{job.path}: no task {task_id}; valid task ids: {valid}")
    return job.tasks[task_id]


def _check_cells(job: JobFile, cells: Mapping[str, str]) -> None:
    for name, value in cells.items():
        if name not in COLUMNS:
            raise JobFileError(f"{job.path}: unknown column {name!r}; valid: {', '.join(COLUMNS)}")
        if any(char in value for char in _FORBIDDEN):
            raise JobFileError(
                f"{job.path}: column {name!r} value {value!r} holds ';', '#' or a line break, "
                "which would break the table; valid: text without them"
            )


def _split_row(line: str) -> tuple[list[str], str]:
    """A row's cells, and what follows them (spacing, ``#`` comment, ``\\r``) verbatim."""
    body = split_comment(line.removesuffix("\r"))
    content = body.rstrip()
    return content.split(";"), line[len(content) :]


def _set_cells(line: str, columns: tuple[str, ...], cells: Mapping[str, str]) -> str:
    values, tail = _split_row(line)
    values += [""] * (len(columns) - len(values))
    for name, value in cells.items():
        if name in columns:  # an empty value for a column the file lacks changes nothing
            values[columns.index(name)] = value
    return ";".join(values) + tail


def _with_columns(job: JobFile, cells: Mapping[str, str]) -> tuple[list[str], tuple[str, ...]]:
    """The file's lines, with a column added for every non-empty cell the table lacks.

    A new column goes right after the nearest column that precedes it in sen2chain's order.
    """
    _check_cells(job, cells)
    lines = job.text.split("\n")
    columns = list(job.columns)
    rows = [job.header_line] + [task.line for task in job.tasks]
    for name in COLUMNS:
        if name in columns or not cells.get(name, "").strip():
            continue
        earlier = COLUMNS[: COLUMNS.index(name)]
        at = max(columns.index(c) for c in earlier if c in columns) + 1
        for number in rows:
            values, tail = _split_row(lines[number - 1])
            values += [""] * (len(columns) - len(values))
            values.insert(at, name if number == job.header_line else "")
            lines[number - 1] = ";".join(values) + tail
        columns.insert(at, name)
    return lines, tuple(columns)


def _validated(text: str, path: Path) -> JobFile:
    try:
        return parse_job_text(text, path)
    except JobFileProblems as error:
        intro = f"nothing written: the change would give {path}"
        raise JobFileProblems(path, error.problems, intro=intro) from None


def _commit(job: JobFile, lines: list[str]) -> JobFile:
    try:
        current = job.path.read_bytes().decode("utf-8", errors="replace")
    except OSError as error:
        raise JobFileError(f"{job.path}: cannot read before writing: {error.strerror}") from None
    if current != job.text:
        raise JobFileError(f"{job.path} changed on disk since it was loaded; load it again")
    text = "\n".join(lines)
    updated = _validated(text, job.path)
    _write_atomic(job.path, text)
    return updated


def _write_atomic(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write beside ``path`` and rename over it, so no reader sees half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            shutil.copymode(path, temporary)
        if exclusive:
            # link() fails if a job of that name appeared meanwhile; replace() would clobber it.
            os.link(temporary, path)
        else:
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
