"""A five-field cron expression checker for job files' ``timing``. Pure: no Dagster.

It accepts what Vixie cron (sen2chain's crontab) and Dagster schedules both accept, so a
timing that passes here runs the same way in either: ``*``, numbers, ``a-b`` ranges,
``*/n``, ``a-b/n`` and ``a/n`` steps, ``,`` lists, month and weekday names (``jan``,
``mon``, any case) and the ``@hourly``/``@daily``/``@midnight``/``@weekly``/``@monthly``/
``@yearly``/``@annually`` shorthands. Quartz extras (``?``, ``L``, ``W``, ``#``) and seconds
fields are refused, as is a day that never comes (``0 0 31 2 *``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CRON_HELP = (
    "valid: five fields 'minute hour day-of-month month day-of-week' (e.g. '0 2 * * *'), "
    "each '*', a number, a range 'a-b', a step '*/n', 'a-b/n' or 'a/n', or a ',' list of "
    "those; minute 0-59, hour 0-23, day 1-31, month 1-12 or jan-dec, weekday 0-7 or sun-sat "
    "(0 and 7 are Sunday); or one of @hourly, @daily, @midnight, @weekly, @monthly, @yearly, "
    "@annually"
)
MACROS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# Longest month lengths (February counts its leap day) to spot days that never come.
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_ITEM_RE = re.compile(r"^(?P<base>\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(?P<step>\d+))?$")


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_offset: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day of week", 0, 7, _DAYS, 0),
)


class _FieldError(Exception):
    """One field of the expression is wrong (turned into a problem string)."""


def _value(text: str, spec: _Field) -> int:
    if text.isdigit():
        number = int(text)
    elif text in spec.names:
        number = spec.names.index(text) + spec.name_offset
    else:
        names = f" or a name {spec.names[0]}..{spec.names[-1]}" if spec.names else ""
        raise _FieldError(f"{spec.name} {text!r} is not a number{names}")
    if not spec.low <= number <= spec.high:
        raise _FieldError(f"{spec.name} {number} is outside {spec.low}-{spec.high}")
    return number


def _expand(field: str, spec: _Field) -> set[int]:
    values: set[int] = set()
    for item in field.lower().split(","):
        match = _ITEM_RE.match(item)
        if not match:
            raise _FieldError(f"{spec.name} item {item!r} is not '*', a value, a range or a step")
        base, step_text = match["base"], match["step"]
        step = int(step_text) if step_text is not None else 1
        if step < 1:
            raise _FieldError(f"{spec.name} step in {item!r} must be at least 1")
        if base == "*":
            low, high = spec.low, spec.high
        elif "-" in base:
            first, last = base.split("-")
            low, high = _value(first, spec), _value(last, spec)
            if low > high:
                raise _FieldError(f"{spec.name} range {item!r} runs backwards; write low-high")
        else:
            low = _value(base, spec)
            # 'a/n' means from a to the end of the field, every n (Dagster and Vixie agree).
            high = spec.high if step_text is not None else low
        values.update(range(low, high + 1, step))
    return values


def cron_problem(expression: str) -> str | None:
    """Say what is wrong with a cron expression, or ``None`` when it is valid.

    Args:
        expression: the ``timing`` value, e.g. ``"0 2 * * 1-5"``.

    Returns:
        ``None`` for a valid expression, else one sentence naming the field at fault.
    """
    text = expression.strip()
    if text.lower() in MACROS:
        return None
    fields = text.split()
    if len(fields) != 5:
        return f"expected 5 fields separated by spaces, found {len(fields)}"
    try:
        expanded = [_expand(field, spec) for field, spec in zip(fields, _FIELDS, strict=True)]
    except _FieldError as error:
        return str(error)
    days, months = expanded[2], expanded[3]
    # Dagster refuses these even with a weekday (which crontab would OR in), so we do too.
    if min(days) > max(_MONTH_DAYS[month - 1] for month in months):
        return f"day {min(days)} never occurs in the chosen month(s): the schedule would never run"
    return None


def is_valid_cron(expression: str) -> bool:
    """True when ``expression`` is a cron expression both crontab and Dagster accept."""
    return cron_problem(expression) is None
