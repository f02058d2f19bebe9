"""sen2chain's extraction job files (``config/jobs_extr/job_<jid>.cfg``): parsing. Pure.

The same hybrid format as processing job files (:mod:`s2_assets.jobs.jobfile`), read by
:mod:`s2_assets.jobs.tablefile`: ``key = value`` settings, then a ``;`` table, ``#`` comments anywhere, and the same standards: every
problem of a file is reported at once, each naming the file, line, column and value and
listing what is valid. Settings: ``logs`` and ``timing`` (required), ``nb_proc`` and
``process_by_line``. Columns, in sen2chain's order::

    shapefile;date_min;date_max;max_clouds;cloudmasks;indices;force_extraction;compiled_data;smooth_data;copy_server

The first six are required. ``shapefile`` is a Shapefile, GeoPackage or GeoJSON of
polygons, a relative path starting at the library root, which must exist; a ``!`` in the
cell disables the row. ``cloudmasks`` lists mask specs (each a separate extraction; empty
reads the raw index); ``indices`` lists index names or ``All`` (at least one);
``force_extraction`` and ``smooth_data`` are booleans (empty: false); ``compiled_data``
lists periods among yearly, monthly, weekly, daily, all (empty: none). ``copy_server``
must be empty or ``False``: copying the CSVs to another server is not done here (see
docs/outputs.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from s2_assets.errors import JobFileError
from s2_assets.jobs import cells
from s2_assets.jobs.cells import CellError, DateSpec
from s2_assets.jobs.jobfile import jid_from_path, jid_problem
from s2_assets.jobs.model import DEFAULT_TIMING, JobFileProblems, JobProblem
from s2_assets.jobs.tablefile import TableFileParser
from s2_assets.specs import MaskSpec

COLUMNS = (
    "shapefile", "date_min", "date_max", "max_clouds", "cloudmasks", "indices",
    "force_extraction", "compiled_data", "smooth_data", "copy_server",
)  # fmt: skip
REQUIRED_COLUMNS = COLUMNS[:6]
SETTING_KEYS = ("logs", "timing", "nb_proc", "process_by_line")
REQUIRED_SETTINGS = ("logs", "timing")
PERIODS = ("yearly", "monthly", "weekly", "daily", "all")
VECTOR_SUFFIXES = (".shp", ".gpkg", ".geojson", ".json")
_OFF = frozenset({"", "false", "none"})


@dataclass(frozen=True)
class ExtractionSettings:
    """The job-wide settings. ``nb_proc`` and ``process_by_line`` are read and checked for
    sen2chain compatibility; Dagster's run queue bounds concurrency instead."""

    logs: bool = False
    timing: str = DEFAULT_TIMING
    nb_proc: int = 8
    process_by_line: int = 0


@dataclass(frozen=True)
class ExtractionTask:
    """One row: extract ``indices`` over the polygons of ``vector`` for the date window, once
    per mask of ``cloudmasks`` (the raw index when there is none)."""

    index: int
    line: int
    vector: Path
    date_min: DateSpec
    date_max: DateSpec
    enabled: bool = True
    max_clouds: int = 100
    cloudmasks: tuple[MaskSpec, ...] = ()
    indices: tuple[str, ...] = ()
    force_extraction: bool = False
    compiled_data: tuple[str, ...] = ()
    smooth_data: bool = False

    @property
    def masks(self) -> tuple[str | None, ...]:
        return tuple(str(m) for m in self.cloudmasks) or (None,)


@dataclass(frozen=True)
class ExtractionJob:
    """A parsed extraction job file."""

    jid: str
    path: Path
    settings: ExtractionSettings
    tasks: tuple[ExtractionTask, ...] = field(default=())

    @property
    def enabled_tasks(self) -> tuple[ExtractionTask, ...]:
        return tuple(task for task in self.tasks if task.enabled)


def parse_periods(text: str) -> tuple[str, ...]:
    """``compiled_data``: periods joined with ``/``, or empty/False for none."""
    if text.strip().lower() in _OFF:
        return ()
    periods = [item.strip().lower() for item in text.split("/")]
    bad = [p for p in periods if p not in PERIODS]
    if bad:
        raise CellError(
            f"unknown period {bad[0]!r}; valid: {', '.join(PERIODS)}, several joined with "
            "'/', or empty/False for none"
        )
    return tuple(dict.fromkeys(periods))


def parse_copy_server(text: str) -> str:
    if text.strip().lower() in _OFF:
        return ""
    raise CellError(
        "copying to a server is not done by s2_assets; valid: empty or False (copy "
        "data/EXTRACTION/ yourself, e.g. with rsync from cron)"
    )


class _Parser(TableFileParser):
    COLUMNS = COLUMNS
    REQUIRED_COLUMNS = REQUIRED_COLUMNS
    SETTING_KEYS = SETTING_KEYS
    REQUIRED_SETTINGS = REQUIRED_SETTINGS

    def __init__(self, text: str, path: Path, root: Path) -> None:
        super().__init__(text, path)
        self.root = root

    def stray_line(self, number: int, content: str, key: str | None) -> None:
        self.problem(
            number,
            f"not a known setting nor a ';' table header: {content!r}; valid settings: "
            + ", ".join(SETTING_KEYS),
        )

    def parse(self) -> tuple[ExtractionSettings, tuple[ExtractionTask, ...]]:
        raw, header, rows = self.sections()
        settings = self.settings(raw)
        if header is None:
            self.no_table()
            return settings, ()
        columns = self.columns(*header)
        if columns is None:
            return settings, ()
        tasks = [self.task(i, number, content, columns) for i, (number, content) in enumerate(rows)]
        return settings, tuple(t for t in tasks if t is not None)

    def settings(self, raw: dict[str, tuple[int, str]]) -> ExtractionSettings:
        readers: dict[str, Callable[[str], object]] = {
            "logs": cells.parse_bool,
            "timing": self.timing,
            "nb_proc": lambda text: cells.parse_int(text, low=0),
            "process_by_line": lambda text: cells.parse_int(text, low=0),
        }
        return ExtractionSettings(**self.read_settings(raw, readers))  # type: ignore[arg-type]

    def vector(self, text: str) -> Path:
        if not text:
            raise CellError("empty; valid: a .shp, .gpkg or .geojson file of polygons")
        path = Path(text).expanduser()
        path = path if path.is_absolute() else self.root / path
        if path.suffix.lower() not in VECTOR_SUFFIXES:
            raise CellError(f"not a vector file; valid suffixes: {', '.join(VECTOR_SUFFIXES)}")
        if not path.is_file():
            raise CellError(
                f"no such file {path}; a relative path starts at the library root {self.root}"
            )
        return path

    def task(
        self, index: int, number: int, content: str, columns: tuple[str, ...]
    ) -> ExtractionTask | None:
        before = len(self.problems)
        raw = [cell.strip() for cell in content.split(";")]
        if len(raw) > len(columns):
            self.problem(
                number, f"row has {len(raw)} cells but the header has {len(columns)}; remove the "
                "extra ';'",
            )  # fmt: skip
        values = dict(zip(columns, raw + [""] * (len(columns) - len(raw)), strict=False))
        readers: dict[str, Callable[[str], object]] = {
            "shapefile": lambda text: self.vector(text.replace("!", "").strip()),
            "date_min": lambda text: cells.parse_date_spec(text, open_as=cells.OPEN_DATE_MIN),
            "date_max": lambda text: cells.parse_date_spec(text, open_as=cells.OPEN_DATE_MAX),
            "max_clouds": cells.parse_max_clouds,
            "cloudmasks": cells.parse_cloudmasks,
            "indices": cells.parse_indices,
            "force_extraction": lambda text: cells.parse_optional_bool(text, empty=False),
            "compiled_data": parse_periods,
            "smooth_data": lambda text: cells.parse_optional_bool(text, empty=False),
            "copy_server": parse_copy_server,
        }
        fields = self.read_cells(number, columns, values, readers)
        if not fields.get("indices", ("x",)):
            self.problem(
                number, "no index to extract; valid: index names joined with '/', or All",
                column="indices", position=columns.index("indices") + 1, value=values["indices"],
            )  # fmt: skip
        self.dates_in_order(number, fields, columns)
        if len(self.problems) > before:
            return None
        fields["vector"] = fields.pop("shapefile")
        fields.pop("copy_server", None)
        enabled = "!" not in values["shapefile"]
        return ExtractionTask(index=index, line=number, enabled=enabled, **fields)  # type: ignore[arg-type]


def extraction_jobs_dir(root: Path) -> Path:
    """``<root>/config/jobs_extr``: sen2chain's folder of extraction job files."""
    return root / "config" / "jobs_extr"


def parse_extraction_text(text: str, path: Path, *, root: Path) -> ExtractionJob:
    """Parse an extraction job file's text; ``path`` names it and gives the jid.

    Raises:
        JobFileProblems: listing every problem of the file.
    """
    jid = jid_from_path(path)
    parser = _Parser(text, path, root)
    problem = jid_problem(jid)
    if problem:
        parser.problem(None, problem)
    settings, tasks = parser.parse()
    if parser.problems:
        raise JobFileProblems(path, parser.problems, intro=f"extraction job file {path} has")
    return ExtractionJob(jid, path, settings, tasks)


def load_extraction_job(path: Path, *, root: Path | None = None) -> ExtractionJob:
    """Read and validate one extraction job file (``root``: the library root, by default
    three levels above the file).

    Raises:
        JobFileProblems: listing every problem, with line, column, value and valid forms.
    """
    root = root if root is not None else path.parents[2]
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise JobFileProblems(
            path, [JobProblem(path, None, f"cannot read: {error.strerror}")]
        ) from None
    except UnicodeDecodeError as error:
        message = "not UTF-8 text; save the file as UTF-8"
        raise JobFileProblems(
            path, [JobProblem(path, None, f"{message} ({error.reason})")]
        ) from None
    return parse_extraction_text(text, path, root=root)


def load_extraction_jobs(root: Path) -> tuple[list[ExtractionJob], list[JobFileError]]:
    """Every ``job_*.cfg`` of ``<root>/config/jobs_extr``; a broken file never stops the others."""
    folder = extraction_jobs_dir(root)
    jobs: list[ExtractionJob] = []
    errors: list[JobFileError] = []
    for path in sorted(folder.glob("job_*.cfg")) if folder.is_dir() else []:
        try:
            jobs.append(load_extraction_job(path, root=root))
        except JobFileError as error:
            errors.append(error)
    return jobs, errors
