"""sen2chain's per-run log file for jobs with ``logs = True``, beside Dagster's own logs:
``<root>/logs/job_<jid>/job_<jid>_run_<YYYYmmdd_HHMMSS>_<run id>.log``, one line per event,
flushed as it is written."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path


class JobLog:
    """Appends timestamped lines to one run's log file."""

    def __init__(self, logs_dir: Path, jid: str, run_id: str, started: datetime) -> None:
        folder = logs_dir / f"job_{jid}"
        stamp = started.strftime("%Y%m%d_%H%M%S")
        self.path = folder / f"job_{jid}_run_{stamp}_{run_id[:8]}.log"

    def write(self, message: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} {message}\n")
