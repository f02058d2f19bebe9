"""The staging ledger: which tape files are being staged, by which Chiller job, for which
partitions, and what to do when a job ends.

A sensor keeps the ledger in its cursor (``to_json`` / ``from_json``) and calls ``tick`` once
per evaluation: it polls each open job once (never blocking), settles finished, failed and
timed-out jobs, reports the partitions whose files are all staged, and submits what is still
waiting in chunks, never more than ``max_open`` jobs at once. A file is never asked for twice
while it is in an open job or already staged for a partition that still waits.

Partition keys are opaque strings (Dagster's ``2024-01-05|40KCB``); files are the absolute
paths Chiller stages. Pure Python: no Dagster, no I/O besides the service it is handed.
The records it keeps and returns (open jobs, chunks, outcomes, the tick report) live in
``s2_assets.providers.staging_records``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from s2_assets.errors import StagingError
from s2_assets.providers.chiller import ChillerJob, normalise_paths
from s2_assets.providers.staging_records import (
    Chunk,
    JobOutcome,
    OpenJob,
    StagingService,
    TickReport,
)

CURSOR_VERSION = 1
_CURSOR_KEYS = ("version", "files", "partitions", "jobs", "staged", "lost")
# How many not-staged files the cursor remembers for the UI (the newest win).
LOST_KEPT = 200


class StagingLedger:
    """Open staging work: partitions with their files, open jobs, files already staged.

    Args:
        partitions: partition key -> the files it needs staged.
        jobs: the open jobs, in submission order.
        staged: files finished jobs staged for partitions that still wait on other files.
    """

    def __init__(
        self,
        partitions: Mapping[str, Iterable[str]] | None = None,
        jobs: Iterable[OpenJob] = (),
        staged: Iterable[str] = (),
    ) -> None:
        self.partitions: dict[str, tuple[str, ...]] = {
            key: tuple(normalise_paths(files)) for key, files in (partitions or {}).items()
        }
        self.jobs: dict[str, OpenJob] = {job.job_id: job for job in jobs}
        self.staged: set[str] = set(staged)
        self.lost: dict[str, str] = {}

    def add(self, requests: Mapping[str, Iterable[str]]) -> list[str]:
        """Ask for ``requests`` (partition key -> files) to be staged.

        A partition already in the ledger gets the union of its files (a reprocessed product
        can appear later). Nothing is submitted here; ``tick`` does that within the limit.

        Returns:
            The keys that were new or gained files, sorted.
        """
        changed = []
        for key, files in requests.items():
            wanted = normalise_paths(files)
            current = set(self.partitions.get(key, ()))
            if key not in self.partitions or not set(wanted) <= current:
                self.partitions[key] = tuple(sorted(current.union(wanted)))
                changed.append(key)
        return sorted(changed)

    def open_files(self) -> set[str]:
        """Files that an open job is staging."""
        return {path for job in self.jobs.values() for path in job.files}

    def pending_files(self) -> list[str]:
        """Files some partition needs that are neither staged nor in an open job, sorted."""
        done = self.open_files() | self.staged
        return sorted({p for files in self.partitions.values() for p in files} - done)

    def plan(self, *, chunk_size: int, max_open: int) -> list[Chunk]:
        """The jobs to submit now: pending files in chunks of at most ``chunk_size``, no more
        chunks than free slots under ``max_open``.

        A partition's files go into one chunk whenever they fit, so that one finished job
        releases whole partitions; a partition larger than a chunk is split.

        Raises:
            StagingError: when ``chunk_size`` or ``max_open`` is below 1.
        """
        if chunk_size < 1 or max_open < 1:
            raise StagingError(
                f"staging needs chunk_size >= 1 and max_open >= 1, not {chunk_size} and {max_open}"
            )
        pending = set(self.pending_files())
        groups = []
        for key in sorted(self.partitions):
            files = [path for path in self.partitions[key] if path in pending]
            # A file two partitions share goes to the first one only: never asked for twice.
            pending.difference_update(files)
            if files:
                groups.append((key, files))
        return _pack(groups, chunk_size=chunk_size, limit=max_open - len(self.jobs))

    def record_submission(self, job: ChillerJob, *, submitted: datetime) -> OpenJob:
        """Remember a job Chiller accepted."""
        open_job = OpenJob(job.job_id, job.poll_url, job.files, _utc(submitted, "submitted"))
        self.jobs[job.job_id] = open_job
        return open_job

    def record_poll_error(self, job_id: str, message: str) -> OpenJob:
        """Count a failed poll of ``job_id``; the job stays open."""
        job = self._job(job_id)
        updated = OpenJob(
            job.job_id, job.poll_url, job.files, job.submitted, job.poll_errors + 1, message
        )
        self.jobs[job_id] = updated
        return updated

    def finish(self, job_id: str, staged: Iterable[str]) -> JobOutcome:
        """Close a finished job: its staged files count, partitions missing any file are dropped."""
        job = self.jobs.pop(job_id, None) or self._job(job_id)
        staged_now = set(staged) & set(job.files)
        self.staged |= staged_now
        not_staged = tuple(sorted(set(job.files) - staged_now))
        self._remember_lost(not_staged, f"job {job_id} finished without staging it")
        return JobOutcome(job_id, "finished", not_staged, self._drop(not_staged))

    def fail(self, job_id: str, end: str, reason: str) -> JobOutcome:
        """Close a job that ended without staging (``end``: ``failed`` or ``timed out``)."""
        job = self.jobs.pop(job_id, None) or self._job(job_id)
        lost = tuple(sorted(job.files))
        self._remember_lost(lost, f"job {job_id} {end}: {reason}")
        return JobOutcome(job_id, end, lost, self._drop(lost), reason)

    def take_ready(self) -> list[str]:
        """Remove and return the partitions whose files are all staged, sorted."""
        ready = sorted(
            key for key, files in self.partitions.items() if all(p in self.staged for p in files)
        )
        for key in ready:
            del self.partitions[key]
        self._prune()
        return ready

    def tick(
        self,
        service: StagingService,
        *,
        now: datetime,
        chunk_size: int,
        max_open: int,
        timeout_s: float,
    ) -> TickReport:
        """Poll every open job once, settle the ended ones, then submit within the limit.

        Args:
            service: the Chiller client (or anything with ``submit`` and ``status``).
            now: the current time, timezone-aware.
            chunk_size: most files per job.
            max_open: most jobs open at once.
            timeout_s: seconds after submission when an unfinished job is given up.

        Returns:
            What happened; partitions in ``ready`` have left the ledger and are the caller's
            to launch. A submission error stops submitting for this tick and is reported,
            so jobs already submitted stay recorded.
        """
        now = _utc(now, "now")
        report = TickReport()
        for job in list(self.jobs.values()):
            age = (now - job.submitted).total_seconds()
            try:
                status = service.status(job.chiller_job)
            except StagingError as exc:
                report.poll_errors[job.job_id] = str(exc)
                self.record_poll_error(job.job_id, str(exc))
                status = None
            if status is not None and status.failed:
                report.outcomes.append(
                    self.fail(job.job_id, "failed", f"Chiller state {status.state}")
                )
            elif status is not None and status.finished:
                report.outcomes.append(self.finish(job.job_id, status.staged))
            elif age > timeout_s:
                reason = f"not finished {age:.0f} s after submission (limit {timeout_s:g} s)"
                report.outcomes.append(self.fail(job.job_id, "timed out", reason))
            elif status is not None and job.poll_errors:
                self.jobs[job.job_id] = OpenJob(job.job_id, job.poll_url, job.files, job.submitted)
        report.ready = self.take_ready()
        for chunk in self.plan(chunk_size=chunk_size, max_open=max_open):
            try:
                submitted = service.submit(chunk.files)
            except StagingError as exc:
                report.submit_error = str(exc)
                break
            report.submitted.append(self.record_submission(submitted, submitted=now))
        report.open_jobs = len(self.jobs)
        report.waiting_files = len(self.pending_files())
        return report

    def to_json(self) -> str:
        """The ledger as a compact JSON string (a sensor cursor); see ``to_dict``."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def to_dict(self) -> dict[str, Any]:
        """The ledger as JSON-ready data, to nest in a larger cursor.

        Every path is written once in ``files``; partitions, jobs and ``staged`` refer to it
        by index, which halves the size (ten years of one tile, L1C and L2A: about 200 kB).
        ``lost`` keeps the latest files that were not staged, readable in the UI.
        """
        table = sorted(
            {p for files in self.partitions.values() for p in files}
            | self.open_files()
            | self.staged
        )
        index = {path: number for number, path in enumerate(table)}
        return {
            "version": CURSOR_VERSION,
            "files": table,
            "partitions": {
                key: [index[p] for p in files] for key, files in sorted(self.partitions.items())
            },
            "jobs": [
                {
                    "id": job.job_id,
                    "url": job.poll_url,
                    "files": [index[p] for p in job.files],
                    "submitted": job.submitted.isoformat(),
                    "poll_errors": job.poll_errors,
                    "last_error": job.last_error,
                }
                for job in self.jobs.values()
            ],
            "staged": sorted(index[p] for p in self.staged),
            "lost": self.lost,
        }

    @classmethod
    def from_json(cls, text: str | None) -> StagingLedger:
        """Rebuild a ledger from ``to_json`` output; None or empty gives an empty ledger.

        Raises:
            StagingError: naming what is wrong with the text and the expected keys.
        """
        if not text:
            return cls()
        try:
            data: Any = json.loads(text)
        except ValueError as exc:
            raise StagingError(f"staging cursor is not JSON ({exc}): {text[:120]!r}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> StagingLedger:
        """Rebuild a ledger from ``to_dict`` output.

        Raises:
            StagingError: naming what is wrong with the data and the expected keys.
        """
        try:
            if not isinstance(data, dict) or data.get("version") != CURSOR_VERSION:
                raise ValueError(f"expected an object with version {CURSOR_VERSION}")
            table = [str(path) for path in data["files"]]

            def paths(numbers: list[int]) -> list[str]:
                # Indices are non-negative by construction; a negative one means a bad cursor.
                if any(not isinstance(n, int) or n < 0 for n in numbers):
                    raise ValueError(f"file indices must be integers >= 0: {numbers!r}")
                return [table[n] for n in numbers]

            jobs = [
                OpenJob(
                    job_id=str(item["id"]),
                    poll_url=str(item["url"]),
                    files=tuple(paths(item["files"])),
                    submitted=_utc(datetime.fromisoformat(item["submitted"]), "submitted"),
                    poll_errors=int(item.get("poll_errors", 0)),
                    last_error=str(item.get("last_error", "")),
                )
                for item in data["jobs"]
            ]
            partitions = {str(key): paths(numbers) for key, numbers in data["partitions"].items()}
            ledger = cls(partitions, jobs, paths(data["staged"]))
            ledger.lost = {str(path): str(why) for path, why in data.get("lost", {}).items()}
            return ledger
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise StagingError(
                f"unreadable staging cursor ({type(exc).__name__}: {exc}); expected JSON with "
                f"keys {', '.join(_CURSOR_KEYS)} as written by StagingLedger.to_dict: "
                f"{str(data)[:120]!r}"
            ) from exc

    def _job(self, job_id: str) -> OpenJob:
        try:
            return self.jobs[job_id]
        except KeyError:
            known = ", ".join(self.jobs) or "none"
            raise StagingError(f"no open staging job {job_id!r}; open jobs: {known}") from None

    def _drop(self, not_staged: Iterable[str]) -> dict[str, tuple[str, ...]]:
        lost = set(not_staged)
        dropped = {
            key: tuple(sorted(lost.intersection(files)))
            for key, files in sorted(self.partitions.items())
            if lost.intersection(files)
        }
        for key in dropped:
            del self.partitions[key]
        self._prune()
        return dropped

    def _remember_lost(self, files: Iterable[str], why: str) -> None:
        for path in files:
            self.lost.pop(path, None)
            self.lost[path] = why
        for path in list(self.lost)[: max(len(self.lost) - LOST_KEPT, 0)]:
            del self.lost[path]

    def _prune(self) -> None:
        # Staged files only matter while a waiting partition needs them.
        needed = {path for files in self.partitions.values() for path in files}
        self.staged &= needed


def _pack(groups: list[tuple[str, list[str]]], *, chunk_size: int, limit: int) -> list[Chunk]:
    chunks: list[tuple[list[str], list[str]]] = []
    for key, files in groups:
        # Start a fresh chunk rather than split a partition that fits in one.
        if chunks and len(chunks[-1][0]) + len(files) > chunk_size >= len(files):
            chunks.append(([], []))
        while files:
            if not chunks or len(chunks[-1][0]) >= chunk_size:
                chunks.append(([], []))
            if len(chunks) > limit:
                return [Chunk(tuple(f), tuple(p)) for f, p in chunks[: max(limit, 0)] if f]
            room = chunk_size - len(chunks[-1][0])
            chunks[-1][0].extend(files[:room])
            chunks[-1][1].append(key)
            files = files[room:]
    return [Chunk(tuple(f), tuple(p)) for f, p in chunks if f]


def chunk_paths(paths: Iterable[str], size: int) -> list[list[str]]:
    """De-duplicated, sorted ``paths`` in lists of at most ``size``.

    Raises:
        StagingError: when ``size`` is below 1 or a path is not absolute.
    """
    if size < 1:
        raise StagingError(f"chunk size must be >= 1, not {size}")
    files = normalise_paths(paths)
    return [files[start : start + size] for start in range(0, len(files), size)]


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None:
        raise StagingError(f"{what} time {moment.isoformat()} has no timezone; pass UTC")
    return moment
