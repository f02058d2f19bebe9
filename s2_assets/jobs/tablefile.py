"""sen2chain's job-file format, shared by processing and extraction job files. Pure.

Both kinds of file (:mod:`s2_assets.jobs.jobfile`, :mod:`s2_assets.jobs.extraction_file`)
are a ``key = value`` header followed by a ``;`` table with one task per row. ``#`` starts a
comment anywhere in a line and blank lines are skipped. The first line that is not a known
setting and holds a ``;`` is the table header; every later line is a row. Keys and column
names are case-insensitive.

:class:`TableFileParser` reads that layout and collects every problem instead of stopping at
the first; each kind of file names its settings and columns and reads its own cells.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from datetime import date
from pathlib import Path
from typing import TypeVar

from s2_assets.jobs.cells import CellError, DateSpec
from s2_assets.jobs.cron import CRON_HELP, cron_problem
from s2_assets.jobs.model import DEFAULT_TIMING, JobProblem

_SETTING_RE = re.compile(r"^([A-Za-z_]\w*)\s*(?:[=:]\s*(.*))?$")

Bound = TypeVar("Bound", date, float)  # a range's bounds: dates or baselines
Numbered = tuple[int, str]  # a 1-based line number and the line's content


def split_comment(line: str) -> str:
    """The part of a line before any ``#`` (a comment starts anywhere in a line)."""
    return line.split("#", 1)[0]


class TableFileParser:
    """Reads one file's text, collecting every problem instead of stopping at the first.

    A kind of file sets ``COLUMNS`` (in sen2chain's order), ``REQUIRED_COLUMNS``,
    ``LEGACY_COLUMNS`` (old name -> column), ``SETTING_KEYS`` and ``REQUIRED_SETTINGS``.
    """

    COLUMNS: tuple[str, ...] = ()
    REQUIRED_COLUMNS: tuple[str, ...] = ()
    LEGACY_COLUMNS: Mapping[str, str] = {}
    SETTING_KEYS: tuple[str, ...] = ()
    REQUIRED_SETTINGS: tuple[str, ...] = ()

    def __init__(self, text: str, path: Path) -> None:
        self.path = path
        self.lines = text.split("\n")
        self.problems: list[JobProblem] = []

    def problem(
        self,
        line: int | None,
        message: str,
        *,
        column: str | None = None,
        position: int | None = None,
        value: str | None = None,
    ) -> None:
        self.problems.append(JobProblem(self.path, line, message, column, position, value))

    def sections(self) -> tuple[dict[str, Numbered], Numbered | None, list[Numbered]]:
        """The settings (key -> line and value), the table header and the rows after it."""
        raw: dict[str, Numbered] = {}
        header: Numbered | None = None
        rows: list[Numbered] = []
        for number, line in enumerate(self.lines, start=1):
            content = split_comment(line.lstrip("\ufeff")).strip()
            if not content:
                continue
            if header is not None:
                rows.append((number, content))
                continue
            match = _SETTING_RE.match(content)
            key = match[1].lower() if match else ""
            if key in self.SETTING_KEYS and match:
                if key in raw:
                    self.problem(number, f"setting {key!r} repeats line {raw[key][0]}; keep one")
                else:
                    raw[key] = (number, (match[2] or "").strip())
            elif ";" in content:
                header = (number, content)
            else:
                self.stray_line(number, content, key if match else None)
        return raw, header, rows

    def stray_line(self, number: int, content: str, key: str | None) -> None:
        """A header line that is neither a known setting nor the table header (``key``: the
        name it sets when it has the form of a setting)."""
        if key is not None:
            self.problem(number, f"unknown setting {key!r}; valid: {', '.join(self.SETTING_KEYS)}")
        else:
            self.problem(
                number,
                f"not a 'key = value' setting nor a ';' table header: {content!r}; valid "
                "settings: " + ", ".join(self.SETTING_KEYS),
            )

    def no_table(self) -> None:
        self.problem(
            None, "no task table: expected a header line such as " + ";".join(self.COLUMNS)
        )

    def read_settings(
        self,
        raw: dict[str, Numbered],
        readers: Mapping[str, Callable[[str], object]],
        *,
        read_empty: Collection[str] = ("timing",),
    ) -> dict[str, object]:
        """Each setting's value read by its reader; an empty value takes the default (left
        out of the result), as sen2chain's fallbacks did, except for the keys of
        ``read_empty``, whose readers give the default themselves."""
        for key in self.REQUIRED_SETTINGS:
            if key not in raw:
                self.problem(None, f"required setting {key!r} is missing; add '{key} = ...'")
        values: dict[str, object] = {}
        for key, (number, text) in raw.items():
            if not text and key not in read_empty:
                continue
            try:
                values[key] = readers[key](text)
            except CellError as error:
                self.problem(number, str(error), column=key, value=text)
        return values

    @staticmethod
    def timing(text: str) -> str:
        # An empty timing falls back to daily at midnight, as sen2chain's cron_enable did.
        if not text:
            return DEFAULT_TIMING
        problem = cron_problem(text)
        if problem:
            raise CellError(f"{problem}; {CRON_HELP}")
        return " ".join(text.split())

    def columns(self, number: int, content: str) -> tuple[str, ...] | None:
        """The header's column names (legacy names translated), or None if it has problems."""
        names: list[str] = []
        ok = True
        for position, cell in enumerate(content.split(";"), start=1):
            raw = cell.strip()
            name = self.LEGACY_COLUMNS.get(raw.lower(), raw.lower())
            if name not in self.COLUMNS:
                valid = ", ".join(self.COLUMNS)
                if self.LEGACY_COLUMNS:
                    valid += " (legacy: " + ", ".join(self.LEGACY_COLUMNS) + ")"
                self.problem(
                    number, f"unknown column; valid: {valid}", column=raw, position=position
                )
                ok = False
            elif name in names:
                self.problem(number, "column appears twice", column=raw, position=position)
                ok = False
            names.append(name)
        missing = [name for name in self.REQUIRED_COLUMNS if name not in names]
        if missing:
            self.problem(number, f"table header lacks required column(s) {', '.join(missing)}")
            ok = False
        return tuple(names) if ok else None

    def read_cells(
        self,
        number: int,
        columns: tuple[str, ...],
        values: Mapping[str, str],
        readers: Mapping[str, Callable[[str], object]],
    ) -> dict[str, object]:
        """Each cell of a row read by its column's reader; a cell that fails is a problem
        naming its line, column and value, and is left out."""
        fields: dict[str, object] = {}
        for position, name in enumerate(columns, start=1):
            try:
                fields[name] = readers[name](values[name])
            except CellError as error:
                self.problem(number, str(error), column=name, position=position, value=values[name])
        return fields

    def dates_in_order(
        self, number: int, fields: Mapping[str, object], columns: tuple[str, ...]
    ) -> bool:
        """False, with a problem, when a row's fixed ``date_max`` is before its ``date_min``."""
        first, last = fields.get("date_min"), fields.get("date_max")
        low = first.fixed if isinstance(first, DateSpec) else None
        return self.in_order(
            number, columns, "date_max", low, last.fixed if isinstance(last, DateSpec) else None,
            f"date_max is before date_min {low}; valid: a date on or after it",
        )  # fmt: skip

    def in_order(
        self,
        number: int,
        columns: tuple[str, ...],
        column: str,
        low: Bound | None,
        high: Bound | None,
        message: str,
    ) -> bool:
        """False, with ``message`` as a problem on ``column``'s cell (which holds
        ``high``), when both bounds are set and ``low`` is above ``high``."""
        if low is None or high is None or low <= high:
            return True
        self.problem(
            number, message, column=column, position=columns.index(column) + 1, value=str(high)
        )
        return False
