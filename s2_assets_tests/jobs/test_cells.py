"""Every value form of a job file cell, its default, and its error."""

from __future__ import annotations

import re
from datetime import date

import pytest

from s2_assets.jobs import cells
from s2_assets.jobs.cells import CellError, DateSpec, RemoveRule
from s2_assets.specs import INDEX_NAMES, MaskSpec

TODAY = date(2024, 3, 10)


@pytest.mark.parametrize("word", ["y", "YES", "t", "True", "on", "1", " true "])
def test_true_words(word: str) -> None:
    assert cells.parse_bool(word) is True


@pytest.mark.parametrize("word", ["n", "No", "f", "FALSE", "off", "0"])
def test_false_words(word: str) -> None:
    assert cells.parse_bool(word) is False


@pytest.mark.parametrize("word", ["", "maybe", "2", "vrai"])
def test_bad_booleans_list_the_valid_words(word: str) -> None:
    with pytest.raises(CellError, match="valid: true/false, yes/no, on/off"):
        cells.parse_bool(word)


def test_optional_bool_empty_takes_the_given_default() -> None:
    assert cells.parse_optional_bool("", empty=False) is False
    assert cells.parse_optional_bool(" ", empty=True) is True
    # DESIGN D2: 'False' means off (sen2chain read any non-empty text as on).
    assert cells.parse_optional_bool("False", empty=True) is False


def test_parse_int_bounds() -> None:
    assert cells.parse_int(" 7 ", low=0) == 7
    with pytest.raises(CellError, match="valid: a whole number 0 or more"):
        cells.parse_int("-1", low=0)
    with pytest.raises(CellError, match=r"valid: a whole number 0\.\.5"):
        cells.parse_int("6", low=0, high=5)
    with pytest.raises(CellError, match="not a whole number"):
        cells.parse_int("2.5", low=0)


@pytest.mark.parametrize(
    ("text", "open_as", "expected", "canonical"),
    [
        ("", cells.OPEN_DATE_MIN, date(2015, 1, 1), ""),
        ("", cells.OPEN_DATE_MAX, date(9999, 12, 31), ""),
        ("2020-02-29", cells.OPEN_DATE_MIN, date(2020, 2, 29), "2020-02-29"),
        ("today", cells.OPEN_DATE_MAX, TODAY, "today"),
        ("Today", cells.OPEN_DATE_MIN, TODAY, "today"),
        ("today-5", cells.OPEN_DATE_MIN, date(2024, 3, 5), "today-5"),
        ("today - 10", cells.OPEN_DATE_MAX, date(2024, 2, 29), "today-10"),
        ("today-0", cells.OPEN_DATE_MIN, TODAY, "today"),
    ],
)
def test_date_forms_resolve(text: str, open_as: date, expected: date, canonical: str) -> None:
    spec = cells.parse_date_spec(text, open_as=open_as)
    assert spec.resolve(TODAY) == expected
    assert str(spec) == canonical
    assert spec.is_open == (text == "")


@pytest.mark.parametrize("text", ["tomorrow", "2020-02-30", "2020/01/01", "20200101", "today+1"])
def test_bad_dates_list_the_valid_forms(text: str) -> None:
    with pytest.raises(
        CellError, match=re.escape("valid: empty (open), a date YYYY-MM-DD, today, or today-N")
    ):
        cells.parse_date_spec(text, open_as=cells.OPEN_DATE_MIN)


def test_today_minus_n_is_bounded() -> None:
    assert cells.parse_date_spec("today-36500", open_as=cells.OPEN_DATE_MIN).days_ago == 36500
    with pytest.raises(CellError, match="at most 36500 days"):
        cells.parse_date_spec("today-99999999", open_as=cells.OPEN_DATE_MIN)


def test_relative_date_moves_with_today() -> None:
    spec = DateSpec(open_as=cells.OPEN_DATE_MIN, days_ago=3)
    assert spec.resolve(date(2024, 1, 2)) == date(2023, 12, 30)


@pytest.mark.parametrize(("text", "expected"), [("", 100), ("0", 0), ("80", 80), ("100", 100)])
def test_max_clouds(text: str, expected: int) -> None:
    assert cells.parse_max_clouds(text) == expected


@pytest.mark.parametrize("text", ["101", "-1", "80.5", "lots"])
def test_bad_max_clouds(text: str) -> None:
    with pytest.raises(
        CellError, match=re.escape("valid: empty (means 100) or a whole percentage 0..100")
    ):
        cells.parse_max_clouds(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", None), ("False", None), ("none", None), ("True", "l1c"), ("L1C", "l1c"), ("l2a", "l2a")],
)
def test_download(text: str, expected: str | None) -> None:
    assert cells.parse_download(text) == expected


def test_bad_download() -> None:
    with pytest.raises(
        CellError, match=re.escape("valid: empty, False or None (no download), True or l1c")
    ):
        cells.parse_download("l3a")


@pytest.mark.parametrize(("text", "expected"), [("", None), ("4", 4.0), ("05.10", 5.1)])
def test_baseline_limits(text: str, expected: float | None) -> None:
    assert cells.parse_baseline_limit(text) == expected


@pytest.mark.parametrize("text", ["N0510", "5.1.0", "-1", "100"])
def test_bad_baseline_limits(text: str) -> None:
    with pytest.raises(CellError, match="processing baseline written as in product names"):
        cells.parse_baseline_limit(text)


def test_cloudmasks_forms() -> None:
    assert cells.parse_cloudmasks("") == ()
    assert cells.parse_cloudmasks("False") == ()
    specs = cells.parse_cloudmasks("CM001/cm003-prb20-iter3/CM001")
    assert specs == (MaskSpec("CM001"), MaskSpec("CM003", probability=20, iterations=3))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("OCM", "unknown mask version 'OCM'"),
        ("CM001//CM002", "empty item"),
        ("CM003-XYZ1", "unexpected parameter"),
    ],
)
def test_bad_cloudmasks_list_the_forms(text: str, fragment: str) -> None:
    with pytest.raises(CellError, match=fragment) as caught:
        cells.parse_cloudmasks(text)
    if "empty" not in fragment:
        assert "CM004-CSH<0|1>-CMP<0|1>-CHP<0|1>-TCI<0|1>-ITER<n>" in str(caught.value)


def test_indices_forms() -> None:
    assert cells.parse_indices("") == ()
    assert cells.parse_indices("false") == ()
    assert cells.parse_indices("All") == INDEX_NAMES
    assert cells.parse_indices("ALL") == INDEX_NAMES
    assert cells.parse_indices("ndvi/NBR/NDVI") == ("NDVI", "NBR")


def test_bad_index_lists_the_names() -> None:
    with pytest.raises(CellError, match="unknown index 'NDVX'; valid: NDVI, NDWIMCF"):
        cells.parse_indices("NDVI/NDVX")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("False", ()),
        ("l1c", (RemoveRule("l1c", "new", 0),)),
        ("L2A", (RemoveRule("l2a", "new", 0),)),
        ("l1c-new-cc80/l2a-all", (RemoveRule("l1c", "new", 80), RemoveRule("l2a", "all", 0))),
        ("l1c-all-cc0", (RemoveRule("l1c", "all", 0),)),
        ("l2a-cc50", (RemoveRule("l2a", "new", 50),)),
        ("l1c-ALL-CC100/l1c-all-cc100", (RemoveRule("l1c", "all", 100),)),
    ],
)
def test_remove_forms(text: str, expected: tuple[RemoveRule, ...]) -> None:
    assert cells.parse_remove(text) == expected


@pytest.mark.parametrize("text", ["l1c-some", "l3a", "l1c-new-cc101", "l1c-cc", "l1c/"])
def test_bad_remove_rules(text: str) -> None:
    with pytest.raises(CellError, match=r"l1c-new, l1c-all, l2a-new, l2a-all|empty item"):
        cells.parse_remove(text)


def test_remove_rule_text_and_threshold() -> None:
    rule = RemoveRule("l1c", "new", 80)
    assert str(rule) == "l1c-new-cc80"
    assert str(RemoveRule("l2a", "all")) == "l2a-all"
    assert rule.matches(80.0) and rule.matches(95.5)
    assert not rule.matches(79.9)
    # Unknown cloud cover is never removed, as in sen2chain.
    assert not RemoveRule("l1c").matches(None)
