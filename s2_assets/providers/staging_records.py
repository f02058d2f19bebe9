"""What the staging ledger tracks and reports: the Chiller service it drives
(``StagingService``), its open jobs (``OpenJob``), the chunks it plans to submit (``Chunk``),
how each job ended (``JobOutcome``) and what one sensor tick did (``TickReport``, with the run
tags and log lines the sensor shows).

Plain records, no state changes: ``s2_assets.providers.staging_ledger`` holds the ledger that
makes them. Pure Python: no Dagster, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from s2_assets.providers.chiller import ChillerJob, ChillerStatus


class StagingService(Protocol):
    """What the ledger needs from Chiller (``ChillerClient`` is one)."""

    def submit(self, paths: Iterable[str]) -> ChillerJob:
        """Start one staging job for ``paths``."""
        ...

    def status(self, job: ChillerJob) -> ChillerStatus:
        """Poll ``job`` once."""
        ...


@dataclass(frozen=True)
class OpenJob:
    """A Chiller job the ledger is waiting on.

    ``poll_errors`` counts failed polls in a row and ``last_error`` keeps the latest message,
    so an unreachable Chiller shows in the cursor and the UI without failing the job: only
    the timeout gives up on it.
    """

    job_id: str
    poll_url: str
    files: tuple[str, ...]
    submitted: datetime
    poll_errors: int = 0
    last_error: str = ""

    @property
    def chiller_job(self) -> ChillerJob:
        return ChillerJob(job_id=self.job_id, poll_url=self.poll_url, files=self.files)


@dataclass(frozen=True)
class Chunk:
    """Files to submit as one job, and the partitions they serve."""

    files: tuple[str, ...]
    partitions: tuple[str, ...]


@dataclass(frozen=True)
class JobOutcome:
    """How one job ended: ``finished``, ``failed`` (Chiller said ERROR) or ``timed out``.

    ``not_staged`` lists the job's files Chiller did not stage (all of them unless finished);
    ``dropped`` maps each partition given up because of them to its files that are not staged.
    """

    job_id: str
    end: str
    not_staged: tuple[str, ...]
    dropped: dict[str, tuple[str, ...]]
    reason: str = ""


@dataclass
class TickReport:
    """What one ``tick`` did, for the sensor's run request, logs and cursor."""

    ready: list[str] = field(default_factory=list)
    outcomes: list[JobOutcome] = field(default_factory=list)
    submitted: list[OpenJob] = field(default_factory=list)
    poll_errors: dict[str, str] = field(default_factory=dict)
    submit_error: str = ""
    open_jobs: int = 0
    waiting_files: int = 0

    @property
    def not_staged(self) -> list[str]:
        """Every file a job ended without staging, sorted."""
        return sorted({path for outcome in self.outcomes for path in outcome.not_staged})

    @property
    def dropped(self) -> dict[str, tuple[str, ...]]:
        """Partitions given up this tick, each with its files that were not staged."""
        merged: dict[str, set[str]] = {}
        for outcome in self.outcomes:
            for key, files in outcome.dropped.items():
                merged.setdefault(key, set()).update(files)
        return {key: tuple(sorted(files)) for key, files in sorted(merged.items())}

    def run_tags(self, prefix: str = "s2/staging") -> dict[str, str]:
        """Short tags for the backfill of ``ready``: the jobs that ended and what was lost."""
        return {
            f"{prefix}_jobs": ",".join(outcome.job_id for outcome in self.outcomes),
            f"{prefix}_not_staged": str(len(self.not_staged)),
            f"{prefix}_dropped_partitions": str(len(self.dropped)),
        }

    def summary(self) -> str:
        """Human-readable lines for the sensor log; lists every file that was not staged."""
        lines = [
            f"{len(self.ready)} partition(s) staged, {len(self.submitted)} job(s) submitted, "
            f"{self.open_jobs} open, {self.waiting_files} file(s) waiting for a slot"
        ]
        for outcome in self.outcomes:
            reason = f" ({outcome.reason})" if outcome.reason else ""
            lines.append(
                f"job {outcome.job_id} {outcome.end}{reason}: "
                f"{len(outcome.not_staged)} file(s) not staged"
            )
            lines.extend(f"  not staged: {path}" for path in outcome.not_staged)
            lines.extend(f"  partition {key} dropped" for key in sorted(outcome.dropped))
        lines.extend(
            f"job {job_id}: poll failed: {error}" for job_id, error in self.poll_errors.items()
        )
        if self.submit_error:
            lines.append(f"submission stopped: {self.submit_error}")
        return "\n".join(lines)
