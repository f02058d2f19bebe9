"""The acquisitions table of one tile: every product a provider offers, kept as parquet.

Merging a fresh search into the stored table keeps products seen before (a provider that
drops a product from its catalogue does not make ours forget it) and updates what changes
(online flag, cloud cover once known, location). Written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from s2_assets.providers.base import ProductRecord

COLUMNS = (
    "product_id", "level", "tile", "date", "sensing_time", "cloud_cover", "baseline",
    "provider", "location", "size", "online", "remote_id", "checksums",
)  # fmt: skip


@dataclass(frozen=True)
class MergeResult:
    """What a refresh changed: the new rows and the (date, level) pairs they touch."""

    records: list[ProductRecord]
    new: list[ProductRecord]

    @property
    def new_dates(self) -> list[date]:
        return sorted({r.date for r in self.new})


def read_table(path: Path) -> list[ProductRecord]:
    """The stored catalogue, or an empty one.

    Read column by column with pyarrow (the planner reads every table of a job at each tick:
    a hundred tiles of ten years are 146,000 rows); the same values as
    :meth:`ProductRecord.from_row` gives row by row: missing or NaN cloud cover and size are
    None, checksums parsed from their ``ALG:hex`` text, absent columns take their defaults.
    """
    if not path.is_file():
        return []
    table = pq.ParquetFile(path).read()
    columns: dict[str, list[Any]] = {}
    for name in table.column_names:
        values = table.column(name)
        columns[name] = _times(values) if name == "sensing_time" else values.to_pylist()

    def column(name: str, default: object = None) -> list[Any]:
        return columns.get(name) or [default] * table.num_rows

    rows = zip(
        column("product_id"), column("level"), column("tile"), column("sensing_time"),
        column("cloud_cover"), column("baseline"), column("provider"), column("location"),
        column("size"), column("online", True), column("remote_id"), column("checksums"),
        strict=True,
    )  # fmt: skip
    return [_record(row) for row in rows]


def _record(row: tuple[Any, ...]) -> ProductRecord:
    product_id, level, tile, sensing, cloud, baseline, provider, location, size = row[:9]
    online, remote_id, sums = row[9:]
    return ProductRecord(
        product_id=str(product_id),
        level=str(level),
        tile=str(tile),
        sensing_time=sensing,
        cloud_cover=None if cloud is None or cloud != cloud else float(cloud),
        baseline=str(baseline),
        provider=str(provider),
        location=str(location),
        size=None if size is None or size != size else int(size),
        online=bool(online),
        remote_id=str(remote_id or ""),
        checksums=_checksums(sums) if sums else {},
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _times(column: pa.ChunkedArray) -> list[datetime]:
    """Sensing times: UTC timestamps as integers (pyarrow's own conversion of each value
    costs as much as the rest of the table), anything else value by value."""
    kind = column.type
    if pa.types.is_timestamp(kind) and kind.tz == "UTC" and not column.null_count:
        # Below the microsecond is dropped, as a pandas Timestamp's to_pydatetime does.
        micros = column.cast(pa.timestamp("us", tz="UTC"), safe=False).cast(pa.int64())
        return [_EPOCH + timedelta(microseconds=us) for us in micros.to_pylist()]
    return [_datetime(value) for value in column.to_pylist()]


def _datetime(value: object) -> datetime:
    if isinstance(value, datetime):  # a pandas Timestamp (nanoseconds) is one too
        return value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
    return datetime.fromisoformat(str(value))


def _checksums(text: object) -> dict[str, str]:
    return dict(part.split(":", 1) for part in str(text).split(";") if part)


def write_table(path: Path, records: Iterable[ProductRecord]) -> None:
    rows = [r.to_row() for r in sorted(records, key=lambda r: (r.sensing_time, r.product_id))]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["cloud_cover"] = frame["cloud_cover"].astype("float64")
    frame["size"] = frame["size"].astype("Int64")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    frame.to_parquet(partial, index=False)
    os.replace(partial, path)


def merge(stored: list[ProductRecord], found: list[ProductRecord]) -> MergeResult:
    """Union by (provider, product id); a fresh row replaces the stored one."""
    merged = {(r.provider, r.product_id): r for r in stored}
    known = set(merged)
    new = []
    for record in found:
        key = (record.provider, record.product_id)
        if key not in known:
            new.append(record)
        elif record.cloud_cover is None and merged[key].cloud_cover is not None:
            # Learned from the product itself (EODC lists none): keep it.
            record = replace(record, cloud_cover=merged[key].cloud_cover)
        merged[key] = record
    return MergeResult(records=list(merged.values()), new=new)


def learn_cloud_cover(path: Path, covers: dict[str, float]) -> None:
    """Store cloud covers read from the products themselves (product id -> percent) for rows
    that had none, so the planner applies the cloud limit without reading them again."""
    if not covers:
        return
    records = read_table(path)
    changed = [
        replace(r, cloud_cover=covers[r.product_id])
        if r.cloud_cover is None and r.product_id in covers
        else r
        for r in records
    ]
    if changed != records:
        write_table(path, changed)


def select(
    records: Iterable[ProductRecord], *, level: str, day: date, provider: str | None = None
) -> list[ProductRecord]:
    """The rows of one level and sensing day (and provider, if given)."""
    return [
        r
        for r in records
        if r.level == level and r.date == day and (provider is None or r.provider == provider)
    ]
