"""Cloud-mask specs and index names (s2_assets.specs)."""

from __future__ import annotations

import pytest

from s2_assets.errors import IndexNameError, MaskSpecError
from s2_assets.specs import (
    DEFAULT_MASK_SPEC,
    INDEX_NAMES,
    MaskSpec,
    parse_index_name,
    parse_mask_spec,
)

VALID_FORMS = (
    "valid forms: CM001, CM002-B11, CM003-PRB<p>-ITER<n>, "
    "CM004-CSH<0|1>-CMP<0|1>-CHP<0|1>-TCI<0|1>-ITER<n>"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CM001", MaskSpec("CM001")),
        ("CM002-B11", MaskSpec("CM002")),
        ("CM003-PRB20-ITER3", MaskSpec("CM003", probability=20, iterations=3)),
        ("CM003-PRB0-ITER0", MaskSpec("CM003", probability=0, iterations=0)),
        ("CM003-PRB100-ITER12", MaskSpec("CM003", probability=100, iterations=12)),
        (
            "CM004-CSH1-CMP0-CHP1-TCI0-ITER2",
            MaskSpec("CM004", iterations=2, cloud_medium=False, thin_cirrus=False),
        ),
        ("CM004-CSH0-CMP0-CHP0-TCI0-ITER0", MaskSpec("CM004", 1, 0, False, False, False, False)),
        ("CM004-CSH1-CMP1-CHP1-TCI1-ITER0", MaskSpec("CM004", iterations=0)),
    ],
)
def test_every_canonical_form_parses_and_round_trips(text: str, expected: MaskSpec) -> None:
    spec = parse_mask_spec(text)
    assert spec == expected
    assert str(spec) == text
    assert parse_mask_spec(str(spec)) == spec


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("CM002", "CM002-B11"),
        ("cm001", "CM001"),
        ("  cm003-prb5-iter1 ", "CM003-PRB5-ITER1"),
        # sen2chain's defaults for missing parameters: probability 1, 5 iterations, flags on.
        ("CM003", "CM003-PRB1-ITER5"),
        ("CM003-PRB40", "CM003-PRB40-ITER5"),
        ("CM003-ITER2", "CM003-PRB1-ITER2"),
        ("CM004", "CM004-CSH1-CMP1-CHP1-TCI1-ITER5"),
        ("CM004-CSH0", "CM004-CSH0-CMP1-CHP1-TCI1-ITER5"),
        ("CM004-ITER1-TCI0", "CM004-CSH1-CMP1-CHP1-TCI0-ITER1"),
        ("CM004-CSHTRUE-CMPFALSE", "CM004-CSH1-CMP0-CHP1-TCI1-ITER5"),
    ],
)
def test_short_and_loose_forms_normalise(text: str, canonical: str) -> None:
    assert str(parse_mask_spec(text)) == canonical


def test_default_spec_is_valid_and_canonical() -> None:
    assert str(parse_mask_spec(DEFAULT_MASK_SPEC)) == DEFAULT_MASK_SPEC


@pytest.mark.parametrize(
    ("text", "classes"),
    [
        ("CM004", (3, 8, 9, 10)),
        ("CM004-CSH0-CMP1-CHP1-TCI0", (8, 9)),
        ("CM004-CSH1-CMP0-CHP0-TCI0", (3,)),
        ("CM004-CSH0-CMP0-CHP0-TCI0", ()),
    ],
)
def test_cm004_scl_classes(text: str, classes: tuple[int, ...]) -> None:
    assert parse_mask_spec(text).scl_classes == classes


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "unknown mask version ''"),
        ("CM005", "unknown mask version 'CM005'"),
        ("OCM", "unknown mask version 'OCM'"),
        ("CM001-PRB1", "CM001 takes no parameters but 'PRB1'"),
        ("CM002-B12", "CM002 takes no parameters but 'B12'"),
        ("CM002-B11-ITER1", "CM002 takes no parameters but 'B11-ITER1'"),
        ("CM003-CSH1", "unexpected parameter 'CSH1' for CM003"),
        ("CM003-PRB", "unexpected parameter 'PRB' for CM003"),
        ("CM003-PRB1-PRB2", "unexpected parameter 'PRB2' for CM003"),
        ("CM003-PRB101", "PRB is a probability 0..100, not 101"),
        ("CM003-ITERTRUE", "ITER takes a whole number, not 'TRUE'"),
        ("CM003-PRB-5", "unexpected parameter 'PRB' for CM003"),
        ("CM004-PRB1", "unexpected parameter 'PRB1' for CM004"),
        ("CM004-CSH2", "CSH must be 0 or 1, not '2'"),
        ("CM004-CSH1-CMP1-CHP1-TCI1-ITER0-X", "unexpected parameter 'X' for CM004"),
    ],
)
def test_bad_specs_name_the_value_and_list_valid_forms(text: str, why: str) -> None:
    with pytest.raises(MaskSpecError) as info:
        parse_mask_spec(text)
    assert str(info.value) == f"invalid cloud-mask spec {text!r}: {why}; {VALID_FORMS}"


def test_mask_spec_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_mask_spec("CM9")


def test_index_names_are_sen2chains_twelve() -> None:
    assert INDEX_NAMES == (
        "NDVI", "NDWIMCF", "NDWIGAO", "MNDWI", "NDRE", "IRECI",
        "BIGR", "BIRNIR", "BIBG", "EVI", "NBR", "NDBI",
    )  # fmt: skip


@pytest.mark.parametrize("text", [*INDEX_NAMES, "ndvi", " Evi ", "nbr"])
def test_index_names_parse_case_insensitively(text: str) -> None:
    name = parse_index_name(text)
    assert name == text.strip().upper()
    assert name in INDEX_NAMES


@pytest.mark.parametrize("text", ["", "NDV", "NDVI_CM001", "SAVI"])
def test_unknown_index_names_list_the_valid_ones(text: str) -> None:
    with pytest.raises(IndexNameError) as info:
        parse_index_name(text)
    assert str(info.value) == (f"unknown index {text!r}; valid: {', '.join(INDEX_NAMES)} (or All)")
