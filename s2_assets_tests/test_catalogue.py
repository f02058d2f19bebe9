"""The acquisitions table (s2_assets.library.acquisitions): merge, select and the parquet round trip."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from s2_assets.library import acquisitions as catalogue
from s2_assets.providers.base import ProductRecord


def record(
    day: int,
    *,
    level: str = "L1C",
    baseline: str = "05.10",
    provider: str = "archive",
    cloud: float | None = 10.0,
    size: int | None = 1234,
    online: bool = True,
    checksums: dict[str, str] | None = None,
) -> ProductRecord:
    sensing = datetime(2024, 1, day, 6, 35, 11, tzinfo=UTC)
    stamp = sensing.strftime("%Y%m%dT%H%M%S")
    product_id = (
        f"S2A_MSI{level}_{stamp}_N{baseline.replace('.', '')}_R120_T40KCB_{stamp[:9]}083511"
    )
    return ProductRecord(
        product_id=product_id,
        level=level,
        tile="40KCB",
        sensing_time=sensing,
        cloud_cover=cloud,
        baseline=baseline,
        provider=provider,
        location=f"/archive/{product_id}.zip",
        size=size,
        online=online,
        checksums=checksums or {},
    )


def test_merge_keeps_old_rows_and_flags_new_ones() -> None:
    old_1, old_2 = record(1), record(2)
    fresh_2 = record(2, cloud=55.0, online=False)  # same product, changed facts
    new_3 = record(3)
    result = catalogue.merge([old_1, old_2], [fresh_2, new_3])
    by_id = {r.product_id: r for r in result.records}
    assert set(by_id) == {old_1.product_id, old_2.product_id, new_3.product_id}
    assert by_id[old_1.product_id] == old_1  # gone from the provider, kept by us
    assert by_id[old_2.product_id] == fresh_2  # a fresh row replaces the stored one
    assert result.new == [new_3]
    assert result.new_dates == [date(2024, 1, 3)]


def test_merge_with_nothing_new() -> None:
    stored = [record(1), record(2)]
    result = catalogue.merge(stored, [record(2)])
    assert result.new == []
    assert result.new_dates == []
    assert sorted(r.product_id for r in result.records) == sorted(r.product_id for r in stored)


def test_merge_keys_by_provider_and_id() -> None:
    local, remote = record(1, provider="archive"), record(1, provider="cdse")
    result = catalogue.merge([local], [remote])
    assert result.new == [remote]
    assert len(result.records) == 2


def test_new_dates_are_sorted_and_unique() -> None:
    result = catalogue.merge([], [record(5), record(3), record(5, level="L2A"), record(4)])
    assert result.new_dates == [date(2024, 1, 3), date(2024, 1, 4), date(2024, 1, 5)]


def test_parquet_round_trip(tmp_path: Path) -> None:
    rows = [
        record(2, cloud=None, size=None, checksums={"MD5": "abc", "BLAKE3": "def"}),
        record(1, level="L2A", cloud=12.5, size=2**40, online=False),
    ]
    path = tmp_path / "ACQUISITIONS" / "40KCB.parquet"
    catalogue.write_table(path, rows)
    assert sorted(p.name for p in path.parent.iterdir()) == ["40KCB.parquet"]  # no .part left
    back = catalogue.read_table(path)
    # Sorted by sensing time on write; every field survives, NaN cloud and size come back None.
    assert back == sorted(rows, key=lambda r: r.sensing_time)
    assert back[1].cloud_cover is None
    assert back[1].size is None
    assert back[0].size == 2**40
    assert back[1].checksums == {"MD5": "abc", "BLAKE3": "def"}
    assert back[0].sensing_time.tzinfo is not None
    assert back[0].sensing_time == datetime(2024, 1, 1, 6, 35, 11, tzinfo=UTC)
    frame = pd.read_parquet(path)
    assert list(frame.columns) == list(catalogue.COLUMNS)
    assert str(frame["cloud_cover"].dtype) == "float64"
    assert str(frame["size"].dtype) == "Int64"
    assert frame["date"].tolist() == ["2024-01-01", "2024-01-02"]


@pytest.mark.filterwarnings("ignore:Discarding nonzero nanoseconds")  # as from_row does
def test_a_table_of_an_older_layout_reads_as_row_by_row(tmp_path: Path) -> None:
    """The column-wise reader gives what ``ProductRecord.from_row`` makes of each row, also
    for a table with nanosecond times, NaN cover, a null flag and columns it lacks."""
    path = tmp_path / "old.parquet"
    frame = pd.DataFrame(
        {
            "product_id": [record(1).product_id, record(2).product_id],
            "level": ["L1C", "L1C"],
            "tile": ["40KCB", "40KCB"],
            "sensing_time": pd.to_datetime(
                ["2024-01-01T06:35:11.000000001Z", "2024-01-02T06:35:11.000000000Z"], utc=True
            ),
            "cloud_cover": [float("nan"), 3.5],
            "baseline": ["05.10", "05.10"],
            "provider": ["archive", "archive"],
            "location": ["/a.zip", "/b.zip"],
            "online": pd.array([None, True], dtype="boolean"),
        }
    )
    frame.to_parquet(path, index=False)
    rows = pd.read_parquet(path).astype(object)
    expected = [
        ProductRecord.from_row({k: (None if v is pd.NA or v != v else v) for k, v in row.items()})
        for row in rows.to_dict("records")
    ]
    back = catalogue.read_table(path)
    assert back == expected
    assert back[0].cloud_cover is None and back[0].online is False and back[1].online is True
    assert back[0].size is None and back[0].checksums == {} and back[0].remote_id == ""
    assert back[1].sensing_time == datetime(2024, 1, 2, 6, 35, 11, tzinfo=UTC)


def test_all_unknown_cloud_and_size_round_trip(tmp_path: Path) -> None:
    rows = [record(1, cloud=None, size=None), record(2, cloud=None, size=None)]
    path = tmp_path / "t.parquet"
    catalogue.write_table(path, rows)
    assert catalogue.read_table(path) == rows


def test_empty_and_missing_tables(tmp_path: Path) -> None:
    assert catalogue.read_table(tmp_path / "missing.parquet") == []
    path = tmp_path / "empty.parquet"
    catalogue.write_table(path, [])
    assert catalogue.read_table(path) == []


def test_rewrite_replaces_the_table(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    catalogue.write_table(path, [record(1), record(2)])
    catalogue.write_table(path, [record(3)])
    assert [r.date for r in catalogue.read_table(path)] == [date(2024, 1, 3)]


def test_select_by_level_day_and_provider() -> None:
    rows = [
        record(1),
        record(1, level="L2A"),
        record(1, provider="cdse"),
        record(2),
    ]
    assert catalogue.select(rows, level="L1C", day=date(2024, 1, 1)) == [rows[0], rows[2]]
    assert catalogue.select(rows, level="L1C", day=date(2024, 1, 1), provider="cdse") == [rows[2]]
    assert catalogue.select(rows, level="L2A", day=date(2024, 1, 2)) == []
