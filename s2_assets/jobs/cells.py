"""The values a job file's cells hold, and how one cell's text becomes one value. Pure.

Each ``parse_*`` function takes the stripped text of one cell (or one ``key = value``
setting) and returns a typed value or raises :class:`CellError`, whose message says what is
wrong and lists what is valid; :mod:`s2_assets.jobs.jobfile` adds the file, line and column.
Forms and defaults follow sen2chain 1.4.1, with the decisions of DESIGN.md where it is buggy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from s2_assets.errors import IndexNameError, JobFileError, MaskSpecError
from s2_assets.specs import (
    INDEX_NAMES,
    MaskSpec,
    RemoveRule,
    parse_index_name,
    parse_mask_spec,
)

# sen2chain reads an empty date_min as the start of the Sentinel-2 era and an empty
# date_max as open-ended (it writes 9999-12-12, a typo for the 9999-12-31 it documents: D11).
OPEN_DATE_MIN = date(2015, 1, 1)
OPEN_DATE_MAX = date(9999, 12, 31)

BOOL_HELP = "valid: true/false, yes/no, on/off, t/f, y/n, 1/0 (any case)"
DATE_HELP = "valid: empty (open), a date YYYY-MM-DD, today, or today-N (N days before today)"
CLOUDS_HELP = "valid: empty (means 100) or a whole percentage 0..100"
DOWNLOAD_HELP = "valid: empty, False or None (no download), True or l1c, l2a"
REMOVE_HELP = (
    "valid: l1c, l2a, l1c-new, l1c-all, l2a-new, l2a-all, each optionally followed by -ccNN "
    "(remove only products with cloud cover >= NN %, 0..100), several joined with '/'; "
    "or empty/False (remove nothing)"
)
BASELINE_HELP = (
    "valid: empty (no limit) or a processing baseline written as in product names, "
    "e.g. 04.00 or 05.09 for N0509 (0..99.99)"
)
MASKS_HELP = "or empty/False for no mask, several joined with '/'"
INDICES_HELP = "several joined with '/', All for all twelve, or empty/False for none"

_TRUE = frozenset({"y", "yes", "t", "true", "on", "1"})
_FALSE = frozenset({"n", "no", "f", "false", "off", "0"})
_OFF = frozenset({"", "false", "none"})
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TODAY_RE = re.compile(r"^today(?:\s*-\s*(\d+))?$", re.IGNORECASE)
_REMOVE_RE = re.compile(r"^(l1c|l2a)(?:-(new|all))?(?:-cc(\d+))?$", re.IGNORECASE)
# A century back is far before Sentinel-2 and keeps today-N clear of date.min.
_MAX_DAYS_AGO = 36500
_BASELINE_RE = re.compile(r"^\d{1,2}(?:\.\d{1,2})?$")


class CellError(JobFileError):
    """One cell or setting holds a value outside its valid forms."""


def parse_bool(text: str) -> bool:
    """Read a boolean the way Python's old ``strtobool`` did (sen2chain's rule).

    Raises:
        CellError: for anything but the accepted words, listing them.
    """
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise CellError(f"not a boolean; {BOOL_HELP}")


def parse_int(text: str, *, low: int, high: int | None = None) -> int:
    """A whole number in ``low..high`` (no upper limit when ``high`` is None).

    Raises:
        CellError: naming the accepted range.
    """
    bounds = f"{low}..{high}" if high is not None else f"{low} or more"
    try:
        number = int(text.strip())
    except ValueError:
        raise CellError(f"not a whole number; valid: a whole number {bounds}") from None
    if number < low or (high is not None and number > high):
        raise CellError(f"out of range; valid: a whole number {bounds}")
    return number


@dataclass(frozen=True)
class DateSpec:
    """One end of a task's date window: a fixed date, ``today[-N]``, or open.

    ``open_as`` is what an open (empty) end means: 2015-01-01 for ``date_min`` and
    9999-12-31 for ``date_max``. ``today`` resolves to the day itself and windows are
    inclusive at both ends; sen2chain instead turned a ``today`` date_max into tomorrow to
    the same effect (today's acquisitions are included either way).
    """

    open_as: date
    fixed: date | None = None
    days_ago: int | None = None

    @property
    def is_open(self) -> bool:
        return self.fixed is None and self.days_ago is None

    def resolve(self, today: date) -> date:
        """The calendar date this end means on ``today`` (the caller's clock decides today)."""
        if self.fixed is not None:
            return self.fixed
        if self.days_ago is not None:
            return today - timedelta(days=self.days_ago)
        return self.open_as

    def __str__(self) -> str:
        if self.fixed is not None:
            return self.fixed.isoformat()
        if self.days_ago is not None:
            return f"today-{self.days_ago}" if self.days_ago else "today"
        return ""


def parse_date_spec(text: str, *, open_as: date) -> DateSpec:
    """Read ``''``, ``YYYY-MM-DD``, ``today`` or ``today-N`` (any case, spaces around '-').

    Raises:
        CellError: listing the valid forms.
    """
    value = text.strip()
    if not value:
        return DateSpec(open_as=open_as)
    relative = _TODAY_RE.match(value)
    if relative:
        days = int(relative[1] or 0)
        if days > _MAX_DAYS_AGO:
            raise CellError(f"today-N goes back at most {_MAX_DAYS_AGO} days; {DATE_HELP}")
        return DateSpec(open_as=open_as, days_ago=days)
    if _DATE_RE.match(value):
        try:
            return DateSpec(open_as=open_as, fixed=date.fromisoformat(value))
        except ValueError as error:
            raise CellError(f"not a calendar date ({error}); {DATE_HELP}") from None
    raise CellError(f"not a date; {DATE_HELP}")


def parse_max_clouds(text: str) -> int:
    """Cloud-cover limit in percent, inclusive; empty means 100.

    Raises:
        CellError: listing the valid forms.
    """
    if not text.strip():
        return 100
    try:
        return parse_int(text, low=0, high=100)
    except CellError:
        raise CellError(f"not a cloud-cover percentage; {CLOUDS_HELP}") from None


def parse_download(text: str) -> Literal["l1c", "l2a"] | None:
    """Which level a task downloads: ``True``/``l1c`` -> ``"l1c"``, ``l2a``, or None.

    Raises:
        CellError: listing the valid forms.
    """
    word = text.strip().lower()
    if word in _OFF:
        return None
    if word in ("true", "l1c"):
        return "l1c"
    if word == "l2a":
        return "l2a"
    raise CellError(f"not a download level; {DOWNLOAD_HELP}")


def parse_optional_bool(text: str, *, empty: bool) -> bool:
    """A boolean cell whose empty form means ``empty``.

    ``filter_max_pb`` is read this way too: ``False`` turns the filter off (DESIGN D2;
    sen2chain took any non-empty text as on).

    Raises:
        CellError: listing the accepted words.
    """
    return empty if not text.strip() else parse_bool(text)


def parse_baseline_limit(text: str) -> float | None:
    """A processing-baseline bound (``pb_min``/``pb_max``; DESIGN D3: honoured), or None.

    Raises:
        CellError: listing the valid forms.
    """
    value = text.strip()
    if not value:
        return None
    if not _BASELINE_RE.match(value):
        raise CellError(f"not a processing baseline; {BASELINE_HELP}")
    return float(value)


def _items(text: str) -> list[str]:
    """Split a ``/`` list; an empty item (``a//b``, trailing ``/``) is an error."""
    items = [item.strip() for item in text.split("/")]
    if any(not item for item in items):
        raise CellError("empty item in a '/' list; write items separated by single '/'")
    return items


def parse_cloudmasks(text: str) -> tuple[MaskSpec, ...]:
    """Mask specs joined with ``/``; an unknown spec is an error, never CM001 (DESIGN D5).

    Raises:
        CellError: naming the bad spec and listing the valid forms.
    """
    if text.strip().lower() in _OFF:
        return ()
    specs: list[MaskSpec] = []
    for item in _items(text):
        try:
            spec = parse_mask_spec(item)
        except MaskSpecError as error:
            raise CellError(f"{error}; {MASKS_HELP}") from None
        if spec not in specs:
            specs.append(spec)
    return tuple(specs)


def parse_indices(text: str) -> tuple[str, ...]:
    """Index names joined with ``/``, or ``All`` for every one, in canonical spelling.

    Raises:
        CellError: naming the bad name and listing the valid names.
    """
    if text.strip().lower() in _OFF:
        return ()
    if text.strip().lower() == "all":
        return INDEX_NAMES
    names: list[str] = []
    for item in _items(text):
        try:
            name = parse_index_name(item)
        except IndexNameError as error:
            raise CellError(f"{error}; {INDICES_HELP}") from None
        if name not in names:
            names.append(name)
    return tuple(names)


def parse_remove(text: str) -> tuple[RemoveRule, ...]:
    """Remove rules joined with ``/``: ``l1c`` and ``l2a`` alone mean ``-new``.

    Raises:
        CellError: naming the bad rule and listing the valid forms.
    """
    if text.strip().lower() in _OFF:
        return ()
    rules: list[RemoveRule] = []
    for item in _items(text):
        match = _REMOVE_RE.match(item)
        threshold = int(match[3]) if match and match[3] is not None else 0
        if not match or threshold > 100:
            raise CellError(f"unknown remove rule {item!r}; {REMOVE_HELP}")
        level: Literal["l1c", "l2a"] = "l1c" if match[1].lower() == "l1c" else "l2a"
        scope: Literal["new", "all"] = "all" if (match[2] or "").lower() == "all" else "new"
        rule = RemoveRule(level=level, scope=scope, min_cloud_cover=threshold)
        if rule not in rules:
            rules.append(rule)
    return tuple(rules)
