"""Partitions and the TileDate key (s2_assets.partitions)."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import dagster as dg
import pytest

from s2_assets.partitions import (
    DEFAULT_DATE_START,
    TILES,
    TileDate,
    by_tile,
    run_partitions,
    tile_date_partitions,
)


def test_from_multi_partition_key() -> None:
    key = dg.MultiPartitionKey({"tile": "40KCB", "date": "2024-01-03"})
    parsed = TileDate.parse(key)
    assert parsed == TileDate("40KCB", date(2024, 1, 3))
    assert parsed.key == key
    assert str(parsed) == "2024-01-03|40KCB" == str(key)


def test_from_plain_string() -> None:
    assert TileDate.parse("2024-01-03|31UFS") == TileDate("31UFS", date(2024, 1, 3))


def test_round_trip_through_the_partitions_definition() -> None:
    partitions = tile_date_partitions("2024-01-01")
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("tiles", ["40KCB", "31UFS"])
        with dg.partition_loading_context(dynamic_partitions_store=instance):
            keys = partitions.get_partition_keys()
    assert "2024-01-03|40KCB" in keys
    parsed = [TileDate.parse(k) for k in keys]
    assert {p.tile for p in parsed} == {"40KCB", "31UFS"}
    assert min(p.date for p in parsed) == date(2024, 1, 1)
    assert all(str(p) == str(k) for p, k in zip(parsed, keys, strict=True))


@pytest.mark.parametrize(
    "bad",
    [
        "40KCB|2024-01-03",  # dimensions the wrong way round
        "2024-01-03",
        "2024-01-03|",
        "2024-13-03|40KCB",
        "2024-01-03|40kcb",
        "2024-01-03|T40KCB",
        "",
        dg.MultiPartitionKey({"tile": "40KIB", "date": "2024-01-03"}),
        dg.MultiPartitionKey({"tile": "40KCB", "date": "03/01/2024"}),
    ],
)
def test_bad_keys_name_the_key_and_the_form(bad: str | dg.MultiPartitionKey) -> None:
    with pytest.raises(ValueError) as info:
        TileDate.parse(bad)
    assert str(info.value).startswith(
        f"invalid partition key {str(bad)!r}: expected 'YYYY-MM-DD|TILE' ("
    )


def test_bad_tile_key_says_what_is_wrong_with_the_tile() -> None:
    with pytest.raises(ValueError, match=r"drop the leading 'T': '40KCB'"):
        TileDate.parse("2024-01-03|T40KCB")


def test_ordering_and_grouping() -> None:
    keys = [
        TileDate.parse("2024-01-05|40KCB"),
        TileDate.parse("2024-01-02|31UFS"),
        TileDate.parse("2024-01-01|40KCB"),
    ]
    assert by_tile(keys) == {
        "31UFS": [TileDate("31UFS", date(2024, 1, 2))],
        "40KCB": [TileDate("40KCB", date(2024, 1, 1)), TileDate("40KCB", date(2024, 1, 5))],
    }


def test_partitions_definition_shape() -> None:
    partitions = tile_date_partitions()
    dims = {d.name: d.partitions_def for d in partitions.partitions_defs}
    assert set(dims) == {"tile", "date"}
    assert dims["tile"] is TILES
    assert TILES.name == "tiles"
    daily = dims["date"]
    assert isinstance(daily, dg.DailyPartitionsDefinition)
    assert daily.start.date() == date.fromisoformat(DEFAULT_DATE_START) == date(2015, 6, 23)
    assert daily.end_offset == 1  # today's acquisitions are a partition already
    later = {d.name: d.partitions_def for d in tile_date_partitions("2022-01-01").partitions_defs}
    assert isinstance(later["date"], dg.DailyPartitionsDefinition)
    assert later["date"].start.date() == date(2022, 1, 1)


def test_run_partitions_sorts_every_key_of_a_run() -> None:
    # run_partitions only reads context.partition_keys: a ranged run lists every key there.
    context = SimpleNamespace(
        partition_keys=["2024-01-04|40KCB", "2024-01-02|40KCB", "2024-01-03|31UFS"]
    )
    # Sorted by tile, then day: the keys of one tile come together, in time order.
    assert run_partitions(context) == [  # type: ignore[arg-type]
        TileDate("31UFS", date(2024, 1, 3)),
        TileDate("40KCB", date(2024, 1, 2)),
        TileDate("40KCB", date(2024, 1, 4)),
    ]
