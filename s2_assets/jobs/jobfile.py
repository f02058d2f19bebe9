"""sen2chain job files (``config/jobs/job_<jid>.cfg``): parsing, validation, loading. Pure.

A job file is a ``key = value`` header followed by a ``;`` table with one task per row,
read without pandas by :mod:`s2_assets.jobs.tablefile` (the layout extraction job files
share). ``#`` starts a comment anywhere in a line; blank lines are skipped.
The first line that is not a known setting and holds a ``;`` is the table header; every
later line is a task row. Keys and column names are case-insensitive and the legacy column
names ``l1c``, ``l2a`` and ``cloudmask`` mean ``download``, ``compute_l2a``, ``cloudmasks``.

Where we are stricter than sen2chain, on purpose: an unknown setting or column, a row with
more cells than the header, or any value outside its forms is an error naming the file,
line, column and value and listing what is valid (sen2chain silently dropped or defaulted
them). Every problem of a file is reported at once. A row with fewer cells than the header
is an error naming the count (sen2chain read the missing trailing cells as empty, but a cell
left out in the middle shifts every later one). Rows are checked only once the
header is valid (until then their columns are unknown). ``!`` rows are parsed and validated
too, so re-enabling one can never break the job. The typed result lives in
:mod:`s2_assets.jobs.model`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from pathlib import Path

from s2_assets.errors import JobFileError, TileIdError
from s2_assets.jobs import cells
from s2_assets.jobs.cells import CellError
from s2_assets.jobs.model import (
    DEFAULT_PROVIDER,
    JobFile,
    JobFileProblems,
    JobProblem,
    JobSettings,
    Task,
)
from s2_assets.jobs.tablefile import TableFileParser
from s2_assets.products import validate_tile_id

JOB_FILE_PREFIX = "job_"
JOB_FILE_SUFFIX = ".cfg"
# A jid becomes Dagster names (<jid>_job, <jid>_schedule), which allow only these.
JID_RE = re.compile(r"^[A-Za-z0-9_]+$")

COLUMNS = (
    "tile", "date_min", "date_max", "max_clouds", "provider", "filter_max_pb", "pb_min",
    "pb_max", "download", "compute_l2a", "cloudmasks", "indices", "remove", "comments",
)  # fmt: skip
OPTIONAL_COLUMNS = frozenset({"provider", "filter_max_pb", "pb_min", "pb_max", "comments"})
REQUIRED_COLUMNS = tuple(c for c in COLUMNS if c not in OPTIONAL_COLUMNS)
LEGACY_COLUMNS = {"l1c": "download", "l2a": "compute_l2a", "cloudmask": "cloudmasks"}
SETTING_KEYS = (
    "logs", "timing", "provider", "tries", "sleep", "nb_proc", "copy_l2a_sideproducts",
    "clean_before", "clean_after", "process_by_line",
)  # fmt: skip
REQUIRED_SETTINGS = ("logs", "timing")
# Providers sen2chain knew that no longer exist, and what to use instead.
RETIRED_PROVIDERS = {
    "peps": "PEPS (CNES) closed its Sentinel-2 distribution in 2023",
    "scihub": "ESA's Copernicus Open Access Hub (scihub) closed in 2023",
}
PROVIDER_INSTEAD = "use cop_dataspace (the Copernicus Data Space Ecosystem), or eodc/archive"
# Jobs the code location defines itself: a job file may not take their names.
RESERVED_JIDS = {"library_clean": "library_clean_job is the built-in library clean job"}
_PROVIDER_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def job_path(jobs_dir: Path, jid: str) -> Path:
    """Where job ``jid`` lives: ``<jobs_dir>/job_<jid>.cfg``."""
    return jobs_dir / f"{JOB_FILE_PREFIX}{jid}{JOB_FILE_SUFFIX}"


def jid_problem(jid: str) -> str | None:
    """Why ``jid`` cannot name a job, or None when it can."""
    if jid in RESERVED_JIDS:
        return (
            f"job id {jid!r} would collide with a built-in Dagster job ({RESERVED_JIDS[jid]}); "
            "pick another id (rename the file job_<jid>.cfg)"
        )
    if JID_RE.match(jid):
        return None
    return (
        f"job id {jid!r} cannot name Dagster jobs and schedules; valid: letters, digits and "
        "'_' only (rename the file job_<jid>.cfg)"
    )


def dagster_name(jid: str) -> str:
    """The name a jid gives its Dagster job and schedule (``<name>_job``): invalid
    characters become ``_``, so ``my-job`` and ``my_job`` share one."""
    return re.sub(r"[^A-Za-z0-9_]", "_", jid)


def jid_collision(jobs_dir: Path, jid: str) -> str | None:
    """Why ``jid`` collides with another job file of ``jobs_dir`` in Dagster's names."""
    mine = job_path(jobs_dir, jid)
    if not jobs_dir.is_dir():
        return None
    for path in sorted(jobs_dir.glob(f"{JOB_FILE_PREFIX}*{JOB_FILE_SUFFIX}")):
        other = jid_from_path(path)
        if path != mine and dagster_name(other) == dagster_name(jid):
            return (
                f"job id {jid!r} collides with {path.name}: both would be the Dagster job "
                f"{dagster_name(jid)}_job; pick another id or rename {path.name}"
            )
    return None


class _Parser(TableFileParser):
    """Reads one processing job file's text, collecting every problem."""

    COLUMNS = COLUMNS
    REQUIRED_COLUMNS = REQUIRED_COLUMNS
    LEGACY_COLUMNS = LEGACY_COLUMNS
    SETTING_KEYS = SETTING_KEYS
    REQUIRED_SETTINGS = REQUIRED_SETTINGS

    def __init__(self, text: str, path: Path, providers: Collection[str] | None) -> None:
        super().__init__(text, path)
        self.providers = providers

    def parse(self) -> tuple[JobSettings, tuple[str, ...], int, tuple[Task, ...]]:
        raw, header, rows = self.sections()
        settings = self.settings(raw)
        if header is None:
            self.no_table()
            return settings, (), 0, ()
        columns = self.columns(*header)
        if columns is None:
            return settings, (), header[0], ()
        parsed = [
            self.task(index, number, content, columns, settings)
            for index, (number, content) in enumerate(rows)
        ]
        tasks = tuple(task for task in parsed if task is not None)
        return settings, columns, header[0], tasks

    def settings(self, raw: dict[str, tuple[int, str]]) -> JobSettings:
        readers: dict[str, Callable[[str], object]] = {
            "logs": cells.parse_bool,
            "copy_l2a_sideproducts": cells.parse_bool,
            "clean_before": cells.parse_bool,
            "clean_after": cells.parse_bool,
            "tries": lambda text: cells.parse_int(text, low=0),
            "sleep": lambda text: cells.parse_int(text, low=0),
            "nb_proc": lambda text: cells.parse_int(text, low=0),
            "process_by_line": lambda text: cells.parse_int(text, low=0),
            "provider": self.provider,
            "timing": self.timing,
        }
        values = self.read_settings(raw, readers, read_empty=("timing", "provider"))
        return JobSettings(**values)  # type: ignore[arg-type]

    def provider(self, text: str) -> str:
        name = text.strip()
        if name.lower() in ("", "false", "none"):
            return DEFAULT_PROVIDER
        known = self.providers
        if known is not None and name.lower() in RETIRED_PROVIDERS:
            raise CellError(
                f"provider {name!r} no longer exists ({RETIRED_PROVIDERS[name.lower()]}); "
                + PROVIDER_INSTEAD
            )
        if known is not None and name not in known:
            raise CellError(f"unknown provider; valid: {', '.join(sorted(known))}")
        if known is None and not _PROVIDER_RE.match(name):
            raise CellError("not a provider name; valid: letters, digits, '_' and '-'")
        return name

    def task(
        self,
        index: int,
        number: int,
        content: str,
        columns: tuple[str, ...],
        settings: JobSettings,
    ) -> Task | None:
        problems_before = len(self.problems)
        raw = [cell.strip() for cell in content.split(";")]
        if len(raw) > len(columns):
            self.problem(
                number,
                f"row has {len(raw)} cells but the header has {len(columns)}; remove the extra "
                "';' (a comment cannot hold ';' or '#')",
            )
        elif len(raw) < len(columns):
            # Which cell is missing cannot be known: the cells after it would be read one
            # column off, so their values are not checked.
            self.problem(
                number,
                f"row has {len(raw)} cells but the header has {len(columns)} "
                f"({';'.join(columns)}); give every column a cell, empty ones included",
            )
            return None
        values = dict(zip(columns, raw + [""] * (len(columns) - len(raw)), strict=False))
        tile_text = values["tile"]
        enabled = "!" not in tile_text
        readers: dict[str, Callable[[str], object]] = {
            "tile": lambda text: self.tile(text.replace("!", "").strip()),
            "date_min": lambda text: cells.parse_date_spec(text, open_as=cells.OPEN_DATE_MIN),
            "date_max": lambda text: cells.parse_date_spec(text, open_as=cells.OPEN_DATE_MAX),
            "max_clouds": cells.parse_max_clouds,
            "provider": lambda text: self.provider(text) if text else settings.provider,
            # An empty filter_max_pb cell means off, in sen2chain too.
            "filter_max_pb": lambda text: cells.parse_optional_bool(text, empty=False),
            "pb_min": cells.parse_baseline_limit,
            "pb_max": cells.parse_baseline_limit,
            "download": cells.parse_download,
            "compute_l2a": lambda text: cells.parse_optional_bool(text, empty=False),
            "cloudmasks": cells.parse_cloudmasks,
            "indices": cells.parse_indices,
            "remove": cells.parse_remove,
            "comments": str,
        }
        fields = self.read_cells(number, columns, values, readers)
        if len(self.problems) > problems_before:
            return None
        fields.setdefault("provider", settings.provider)
        # sen2chain: no filter_max_pb column means the filter is on.
        fields.setdefault("filter_max_pb", True)
        if not self.ranges_ok(number, fields, columns):
            return None
        return Task(index=index, line=number, enabled=enabled, **fields)  # type: ignore[arg-type]

    def tile(self, text: str) -> str:
        try:
            return validate_tile_id(text)
        except TileIdError as error:
            raise CellError(f"{error}; a '!' in the cell disables the row") from None

    def ranges_ok(self, number: int, fields: dict[str, object], columns: tuple[str, ...]) -> bool:
        dates_ok = self.dates_in_order(number, fields, columns)
        low, high = fields.get("pb_min"), fields.get("pb_max")
        baselines_ok = self.in_order(
            number, columns, "pb_max",
            low if isinstance(low, float) else None, high if isinstance(high, float) else None,
            f"pb_max is below pb_min {low}; valid: a baseline at least pb_min",
        )  # fmt: skip
        return dates_ok and baselines_ok


def parse_job_text(text: str, path: Path, *, providers: Collection[str] | None = None) -> JobFile:
    """Parse a job file's text; ``path`` names the file and gives the jid.

    Args:
        text: the whole file content.
        path: ``.../job_<jid>.cfg``; used for the jid and in messages.
        providers: provider names that exist; None accepts any well-formed name.

    Raises:
        JobFileProblems: listing every problem of the file.
    """
    jid = jid_from_path(path)
    parser = _Parser(text, path, providers)
    problem = jid_problem(jid)
    if problem:
        parser.problem(None, problem)
    settings, columns, header_line, tasks = parser.parse()
    if parser.problems:
        raise JobFileProblems(path, parser.problems)
    return JobFile(jid, path, settings, tasks, columns, header_line, text)


def jid_from_path(path: Path) -> str:
    """``job_reunion.cfg`` -> ``reunion``."""
    name = path.name
    if name.startswith(JOB_FILE_PREFIX) and name.endswith(JOB_FILE_SUFFIX):
        return name[len(JOB_FILE_PREFIX) : -len(JOB_FILE_SUFFIX)]
    return path.stem


def load_job(path: Path, *, providers: Collection[str] | None = None) -> JobFile:
    """Read and validate one job file.

    Args:
        path: ``<library>/config/jobs/job_<jid>.cfg``.
        providers: provider names that exist; None accepts any well-formed name.

    Raises:
        JobFileProblems: (a ``JobFileError``) listing every problem, each with its line,
            column, value and the valid forms.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise JobFileProblems(
            path, [JobProblem(path, None, f"cannot read: {error.strerror}")]
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        message = f"not UTF-8 text (byte {data[error.start]:#04x}); save the file as UTF-8"
        raise JobFileProblems(path, [JobProblem(path, line, message)]) from None
    return parse_job_text(text, path, providers=providers)


def load_jobs(
    jobs_dir: Path, *, providers: Collection[str] | None = None
) -> tuple[list[JobFile], list[JobFileError]]:
    """Load every ``job_*.cfg`` of a folder; a broken file never stops the others.

    Returns:
        The valid jobs sorted by jid, and one error per broken file.
    """
    jobs: list[JobFile] = []
    errors: list[JobFileError] = []
    if not jobs_dir.is_dir():
        return jobs, errors
    paths = sorted(jobs_dir.glob(f"{JOB_FILE_PREFIX}*{JOB_FILE_SUFFIX}"))
    for path in paths:
        try:
            jobs.append(load_job(path, providers=providers))
        except JobFileProblems as error:
            clash = jid_collision(jobs_dir, jid_from_path(path))
            if clash:
                error = JobFileProblems(path, [*error.problems, JobProblem(path, None, clash)])
            errors.append(error)
        except JobFileError as error:
            errors.append(error)
    return sorted(jobs, key=lambda job: job.jid), errors
