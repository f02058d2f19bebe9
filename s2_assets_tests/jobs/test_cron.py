"""The cron checker accepts what crontab and Dagster accept, and names what is wrong."""

from __future__ import annotations

import pytest
from dagster._utils.schedules import is_valid_cron_string

from s2_assets.jobs.cron import cron_problem, is_valid_cron

VALID = (
    "0 0 * * *",
    "30 2 * * 1",
    "*/15 * * * *",
    "0 */6 * * *",
    "0 2 1-15/2 * *",
    "5/15 * * * *",
    "0 0 * JAN-MAR mon-fri",
    "0 0 * * sun",
    "0 0 * * 7",
    "0 0 * * 0-7",
    "0 0,12 1,15 * *",
    "00 02 * * *",
    "0 0 29 2 *",
    "@daily",
    "@HOURLY",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
)


@pytest.mark.parametrize("expression", VALID)
def test_valid_expressions_are_valid_for_dagster_too(expression: str) -> None:
    assert cron_problem(expression) is None
    assert is_valid_cron(expression)
    # The schedule is built from this timing: Dagster must take everything we accept.
    assert is_valid_cron_string(expression)


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("", "expected 5 fields"),
        ("0 0 * *", "found 4"),
        ("0 0 0 * * *", "found 6"),
        ("60 * * * *", "minute 60 is outside 0-59"),
        ("0 24 * * *", "hour 24 is outside 0-23"),
        ("0 0 0 * *", "day of month 0 is outside 1-31"),
        ("0 0 * 13 *", "month 13 is outside 1-12"),
        ("0 0 * * 8", "day of week 8 is outside 0-7"),
        ("*/0 * * * *", "step in '*/0' must be at least 1"),
        ("0 0 * * fri-mon", "runs backwards"),
        ("0 0 ? * *", "not '*', a value"),
        ("0 0 L * *", "not a number"),
        ("0 0 * * 1#2", "not '*', a value"),
        ("mon 0 * * *", "minute 'mon' is not a number"),
        ("0 0 * foo *", "month 'foo' is not a number or a name jan..dec"),
        ("0 0 30 2 *", "never occurs"),
        ("0 0 31 4,6 *", "never occurs"),
        ("0 0 31 2 1", "never occurs"),
        ("@reboot", "expected 5 fields"),
        ("0 0 1,,2 * *", "item ''"),
    ],
)
def test_invalid_expressions_name_the_fault(expression: str, fragment: str) -> None:
    problem = cron_problem(expression)
    assert problem is not None
    assert fragment in problem
