"""Partitions: a dynamic ``tiles`` dimension x a daily ``date`` dimension, and ``TileDate``.

Keys are Dagster's multi-partition strings, dimensions sorted by name: ``"2024-01-03|40KCB"``.
``TileDate`` parses both that string and a ``MultiPartitionKey`` (runs launched with only the
``dagster/partition`` tag hand assets a plain string).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg

from s2_assets.products import validate_tile_id

TILES = dg.DynamicPartitionsDefinition(name="tiles")
# The first Sentinel-2A acquisitions; a later start keeps tiles x days under ~100k per asset.
DEFAULT_DATE_START = "2015-06-23"


def tile_date_partitions(
    start: str = DEFAULT_DATE_START, end: str = ""
) -> dg.MultiPartitionsDefinition:
    """tiles x UTC sensing day from ``start``; up to today included (``end_offset=1``), or
    up to ``end`` included when given (a fixed range, as the demo's)."""
    if end:
        last = date.fromisoformat(end) + timedelta(days=1)  # Dagster's end_date is exclusive
        days = dg.DailyPartitionsDefinition(start_date=start, end_date=last.isoformat())
    else:
        days = dg.DailyPartitionsDefinition(start_date=start, end_offset=1)
    return dg.MultiPartitionsDefinition({"tile": TILES, "date": days})


@dataclass(frozen=True, order=True)
class TileDate:
    """One (tile, sensing day) partition."""

    tile: str
    date: date

    @classmethod
    def parse(cls, key: str | dg.MultiPartitionKey) -> TileDate:
        """From ``MultiPartitionKey`` or ``"YYYY-MM-DD|TILE"``.

        Raises:
            ValueError: naming the key and the expected form.
        """
        if isinstance(key, dg.MultiPartitionKey):
            parts = key.keys_by_dimension
            day_text, tile = parts["date"], parts["tile"]
        else:
            day_text, _, tile = str(key).partition("|")
        try:
            return cls(tile=validate_tile_id(tile), date=date.fromisoformat(day_text))
        except ValueError as exc:
            raise ValueError(
                f"invalid partition key {str(key)!r}: expected 'YYYY-MM-DD|TILE' ({exc})"
            ) from exc

    @property
    def key(self) -> dg.MultiPartitionKey:
        return dg.MultiPartitionKey({"tile": self.tile, "date": self.date.isoformat()})

    def __str__(self) -> str:
        return f"{self.date.isoformat()}|{self.tile}"


def run_partitions(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> list[TileDate]:
    """Every (tile, date) a run covers: one key, or a whole range in a ranged run."""
    return sorted(TileDate.parse(key) for key in context.partition_keys)


def range_tags(tile: str, first: date, last: date) -> dict[str, str]:
    """Run tags that make a run cover ``tile`` from ``first`` to ``last`` (a ranged run)."""
    return {
        "dagster/asset_partition_range_start": str(TileDate(tile, first)),
        "dagster/asset_partition_range_end": str(TileDate(tile, last)),
    }


def by_tile(keys: Iterable[TileDate]) -> dict[str, list[TileDate]]:
    grouped: dict[str, list[TileDate]] = {}
    for key in sorted(keys):
        grouped.setdefault(key.tile, []).append(key)
    return grouped


# ------------------------------------------------------------------ tile x month (composites)

MONTH_FORMAT = "%Y-%m"


def tile_month_partitions(start: str = DEFAULT_DATE_START) -> dg.MultiPartitionsDefinition:
    """tiles x calendar month, from the month of ``start`` to the current month (included:
    its composite covers the days so far). Keys: ``"2024-01|40KCB"``."""
    first = date.fromisoformat(start).replace(day=1)
    return dg.MultiPartitionsDefinition(
        {
            "tile": TILES,
            "month": dg.MonthlyPartitionsDefinition(
                start_date=first.strftime(MONTH_FORMAT), fmt=MONTH_FORMAT, end_offset=1
            ),
        }
    )


@dataclass(frozen=True, order=True)
class TileMonth:
    """One (tile, calendar month) partition; ``first``/``last`` are its first and last days."""

    tile: str
    first: date

    @classmethod
    def parse(cls, key: str | dg.MultiPartitionKey) -> TileMonth:
        """From ``MultiPartitionKey`` or ``"YYYY-MM|TILE"``.

        Raises:
            ValueError: naming the key and the expected form.
        """
        if isinstance(key, dg.MultiPartitionKey):
            month_text, tile = key.keys_by_dimension["month"], key.keys_by_dimension["tile"]
        else:
            month_text, _, tile = str(key).partition("|")
        try:
            return cls(tile=validate_tile_id(tile), first=date.fromisoformat(f"{month_text}-01"))
        except ValueError as exc:
            raise ValueError(
                f"invalid partition key {str(key)!r}: expected 'YYYY-MM|TILE' ({exc})"
            ) from exc

    @property
    def month(self) -> str:
        return self.first.strftime(MONTH_FORMAT)

    @property
    def last(self) -> date:
        following = date(self.first.year + self.first.month // 12, self.first.month % 12 + 1, 1)
        return date.fromordinal(following.toordinal() - 1)

    @property
    def key(self) -> dg.MultiPartitionKey:
        return dg.MultiPartitionKey({"tile": self.tile, "month": self.month})

    def __str__(self) -> str:
        return f"{self.month}|{self.tile}"
