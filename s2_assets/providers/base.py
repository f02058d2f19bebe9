"""The provider interface: one catalogue row per product, search and fetch.

A provider answers two questions: which products exist for a tile, level and date window
(``search``), and where a verified zip of one of them is on local disk (``fetch``). The
library unpacks and publishes that zip; providers never write into the library.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from s2_assets.products import ProductName, baseline_number

# The provider names job files may use (``local`` is the archive's other name).
PROVIDER_NAMES = ("archive", "local", "eodc", "cop_dataspace")


@dataclass(frozen=True)
class ProductRecord:
    """One catalogue row: a product a provider can deliver.

    ``location`` is a path (archive) or URL (CDSE); ``remote_id`` the provider's own key
    (CDSE's UUID), empty when the location is enough. ``checksums`` maps algorithm
    (``MD5``, ``BLAKE3``) to hex digest.
    """

    product_id: str
    level: str
    tile: str
    sensing_time: datetime
    cloud_cover: float | None
    baseline: str
    provider: str
    location: str
    size: int | None = None
    online: bool = True
    remote_id: str = ""
    checksums: dict[str, str] = field(default_factory=dict)

    @property
    def date(self) -> date:
        return self.sensing_time.date()

    @property
    def name(self) -> ProductName:
        return ProductName.parse(self.product_id)

    def to_row(self) -> dict[str, Any]:
        """A flat dict for the acquisitions table (checksums as ``ALG:hex`` text)."""
        row = asdict(self)
        row["date"] = self.date.isoformat()
        row["checksums"] = ";".join(f"{k}:{v}" for k, v in sorted(self.checksums.items()))
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ProductRecord:
        checksums = dict(
            part.split(":", 1) for part in str(row.get("checksums") or "").split(";") if part
        )
        sensing = row["sensing_time"]
        if not isinstance(sensing, datetime):
            sensing = datetime.fromisoformat(str(sensing))
        cloud = row.get("cloud_cover")
        size = row.get("size")
        return cls(
            product_id=str(row["product_id"]),
            level=str(row["level"]),
            tile=str(row["tile"]),
            sensing_time=sensing.to_pydatetime() if hasattr(sensing, "to_pydatetime") else sensing,
            cloud_cover=None if cloud is None or cloud != cloud else float(cloud),
            baseline=str(row["baseline"]),
            provider=str(row["provider"]),
            location=str(row["location"]),
            size=None if size is None or size != size else int(size),
            online=bool(row.get("online", True)),
            remote_id=str(row.get("remote_id") or ""),
            checksums=checksums,
        )


class Provider(Protocol):
    """What every product source offers."""

    name: str

    def search(self, tile: str, level: str, start: date, end: date) -> list[ProductRecord]:
        """Every product of ``tile`` at ``level`` sensed on a day in ``[start, end]``."""
        ...

    def fetch(self, record: ProductRecord, workdir: Path) -> Path:
        """A local, verified zip of ``record``: in place if the provider has one on disk,
        else downloaded into ``workdir``. Raises ``ProductOfflineError`` when not online."""
        ...


def filter_records(
    records: Iterable[ProductRecord],
    *,
    max_cloud: float | None = None,
    pb_min: float | None = None,
    pb_max: float | None = None,
    keep_max_baseline: bool = False,
) -> list[ProductRecord]:
    """Keep what a task asks for, as sen2chain intends (not as its bugs do).

    Cloud limit inclusive; products with unknown cloud cover are kept. ``pb_min``/``pb_max``
    bound the processing baseline (inclusive). ``keep_max_baseline`` keeps only the highest
    baseline of each acquisition (same level, tile and sensing time): older reprocessings go.
    """
    kept = [
        r
        for r in records
        if (max_cloud is None or r.cloud_cover is None or r.cloud_cover <= max_cloud)
        and (pb_min is None or baseline_number(r.baseline) >= pb_min)
        and (pb_max is None or baseline_number(r.baseline) <= pb_max)
    ]
    if keep_max_baseline:
        best: dict[tuple[str, str, datetime], float] = {}
        for r in kept:
            key = (r.level, r.tile, r.sensing_time)
            best[key] = max(best.get(key, -1.0), baseline_number(r.baseline))
        kept = [
            r
            for r in kept
            if baseline_number(r.baseline) == best[(r.level, r.tile, r.sensing_time)]
        ]
    return sorted(kept, key=lambda r: (r.sensing_time, r.product_id))


def unique_by_id(records: Sequence[ProductRecord]) -> list[ProductRecord]:
    """Drop repeated product ids, keeping the first."""
    seen: dict[str, ProductRecord] = {}
    for record in records:
        seen.setdefault(record.product_id, record)
    return list(seen.values())
