"""The failure ledger: which product keeps failing at which stage, its last error, and when it
may be tried again. Pure (no Dagster).

One small JSON file per (stage, product) under ``<root>/logs/failures/<tile>/``, written
atomically by the asset that failed and deleted by the asset that succeeds. The planner reads
a tile's folder once per plan.

Back-off: after the k-th failure in a row a product is not planned again before
``min(BASE * 2**(k-1), CAP)`` has passed since that failure (10 min, 20 min, 40 min, ...,
at most 24 h). A daily job therefore retries every tick; a job that ticks every five
minutes stops hammering a product that keeps failing. A product is never dropped.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

BASE = timedelta(minutes=10)
CAP = timedelta(hours=24)
STAGES = ("l1c", "l2a", "cloudmask", "indices")


@dataclass(frozen=True)
class FailureRecord:
    """``product`` failed ``count`` times in a row at ``stage``; the last time at ``last``."""

    stage: str
    product: str
    count: int
    last: datetime
    error: str

    @property
    def retry_at(self) -> datetime:
        """When the planner may try the product again."""
        return self.last + min(BASE * 2 ** max(self.count - 1, 0), CAP)

    def backing_off(self, now: datetime) -> bool:
        return now < self.retry_at


def ledger_dir(logs_dir: Path, tile: str) -> Path:
    return logs_dir / "failures" / tile


def _path(logs_dir: Path, tile: str, stage: str, product: str) -> Path:
    return ledger_dir(logs_dir, tile) / f"{stage}__{product}.json"


def record_failure(
    logs_dir: Path, tile: str, stage: str, product: str, error: str, *, now: datetime | None = None
) -> FailureRecord:
    """Count one more failure of ``product`` at ``stage``; returns the updated record."""
    path = _path(logs_dir, tile, stage, product)
    previous = _read(path)
    record = FailureRecord(
        stage=stage,
        product=product,
        count=(previous.count if previous else 0) + 1,
        last=now or datetime.now(UTC),
        error=error.strip().splitlines()[0][:500] if error.strip() else "failed",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
    data = {**asdict(record), "last": record.last.isoformat()}
    try:
        partial.write_text(json.dumps(data), encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return record


def clear_failure(logs_dir: Path, tile: str, stage: str, product: str) -> None:
    """``product`` succeeded at ``stage``: forget its failures."""
    _path(logs_dir, tile, stage, product).unlink(missing_ok=True)


def read_failures(logs_dir: Path, tile: str) -> dict[tuple[str, str], FailureRecord]:
    """Every failing (stage, product) of ``tile``; unreadable entries are skipped."""
    folder = ledger_dir(logs_dir, tile)
    found: dict[tuple[str, str], FailureRecord] = {}
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.endswith(".json"):
            continue
        record = _read(Path(entry.path))
        if record is not None:
            found[(record.stage, record.product)] = record
    return found


def _read(path: Path) -> FailureRecord | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return FailureRecord(
            stage=str(data["stage"]),
            product=str(data["product"]),
            count=int(data["count"]),
            last=datetime.fromisoformat(data["last"]),
            error=str(data["error"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
