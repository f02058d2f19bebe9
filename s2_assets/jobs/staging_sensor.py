"""``staging_sensor``: EODC products on tape are staged by Chiller, then launched as ONE backfill.

With a Chiller URL set, the planner holds ``eodc`` products (``new_acquisitions_sensor``
launches none of them) and this sensor takes them: after each catalogue refresh (its own
event-log cursor) it plans the jobs that list the refreshed tiles and adds the zips of the
tape products they miss to a ``StagingLedger``; a file Chiller did not stage is wanted again
after the job's next refresh. Once per evaluation it
ticks the ledger (poll each open Chiller job once, submit what waits within
``ChillerResource.max_open_jobs`` and ``chunk_size``; never blocks) and launches one backfill
per job file (per ``process_by_line`` chunk) of the partitions whose files are all staged.
Files Chiller did not stage are reported in the backfill's run tags, the sensor log, the
cursor (``ledger.lost``) and as an observation on each partition given up; those partitions
are not launched.

The backfill covers only the staged partitions, each asset where something is missing; a day
whose products still sit on tape (waiting, or given up) is never in it, so no run reads a
cold file.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg

from s2_assets.errors import StagingError
from s2_assets.jobs.backfill import sensor_backfill
from s2_assets.jobs.jobfile import load_jobs
from s2_assets.jobs.model import JobFile
from s2_assets.jobs.options import TASK_TAG, options_for
from s2_assets.jobs.planner import fill_gaps, plan_job
from s2_assets.jobs.reconcile import ACQUISITIONS, in_progress
from s2_assets.partitions import TileDate
from s2_assets.providers.base import PROVIDER_NAMES
from s2_assets.providers.staging_ledger import StagingLedger
from s2_assets.providers.staging_records import TickReport
from s2_assets.resources.chiller import ChillerResource
from s2_assets.resources.library import LibraryResource

STAGED_PROVIDER = "eodc"
CURSOR_VERSION = 1
_CURSOR_KEYS = ("version", "after", "ledger", "jobs")


@dataclass
class StagingCursor:
    """The sensor's state, kept as its cursor.

    Attributes:
        after: Storage id of the last ``acquisitions`` materialization read.
        ledger: Partitions waiting for files, open Chiller jobs, files not staged.
        jobs: Partition key -> the job file whose run found it (``""``: a manual refresh),
            so the backfill carries the ``s2/job`` tag that decides its options.
    """

    after: int = 0
    ledger: StagingLedger = field(default_factory=StagingLedger)
    jobs: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": CURSOR_VERSION,
                "after": self.after,
                "ledger": self.ledger.to_dict(),
                "jobs": dict(sorted(self.jobs.items())),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | None) -> "StagingCursor":
        """Read a cursor written by ``to_json``; None or empty is a fresh start.

        Raises:
            StagingError: naming what is wrong and the expected keys.
        """
        if not text:
            return cls()
        try:
            data: Any = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != CURSOR_VERSION:
                raise ValueError(f"expected an object with version {CURSOR_VERSION}")
            after = data["after"]
            if not isinstance(after, int) or after < 0:
                raise ValueError(f"'after' must be an event storage id >= 0, not {after!r}")
            jobs = {str(key): str(job) for key, job in data["jobs"].items()}
            ledger_data = data["ledger"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StagingError(
                f"unreadable staging_sensor cursor ({type(exc).__name__}: {exc}); expected "
                f"JSON with keys {', '.join(_CURSOR_KEYS)}: {text[:120]!r}"
            ) from exc
        return cls(after, StagingLedger.from_dict(ledger_data), jobs)


def refreshed_tiles(instance: dg.DagsterInstance, after: int) -> tuple[set[str], int | None]:
    """Tiles whose catalogue was refreshed after event ``after``, and the last event read."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ACQUISITIONS, after_storage_id=after),
        limit=1000,
        ascending=True,
    ).records
    tiles = {str(r.partition_key) for r in records if r.partition_key}
    return tiles, (max(r.storage_id for r in records) if records else None)


def not_staged_events(
    report: TickReport, jobs: dict[str, str], job_files: Sequence[JobFile], today: date,
    available: set[str],
) -> list[dg.AssetObservation]:  # fmt: skip
    """One observation per asset and partition given up, listing its files not staged."""
    ended = ",".join(outcome.job_id for outcome in report.outcomes)
    events = []
    for raw_key, files in report.dropped.items():
        key = TileDate.parse(raw_key)
        options = options_for(job_files, key.tile, key.date, today=today, job=jobs.get(raw_key))
        for level in options.levels:
            if level.lower() not in available:
                continue
            events.append(
                dg.AssetObservation(
                    asset_key=level.lower(),
                    partition=raw_key,
                    metadata={
                        "staging": "not staged: partition not launched",
                        "not_staged": dg.MetadataValue.json(list(files)),
                        "chiller_jobs": ended,
                    },
                )
            )
    return events


def build_staging_sensor(product_assets: Sequence[dg.AssetsDefinition]) -> dg.SensorDefinition:
    """``staging_sensor``: stage new ``eodc`` products with Chiller, then backfill them."""
    available = {key.to_user_string() for a in product_assets for key in a.keys}

    @dg.sensor(
        name="staging_sensor",
        asset_selection=dg.AssetSelection.assets(*product_assets),
        # Chiller's own SDK polls every 60 s; staging takes minutes to hours.
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Stages new EODC products with Chiller and launches one backfill of the "
        "(tile, date) partitions whose files are staged; reports the files that were not.",
    )
    def staging_sensor(
        context: dg.SensorEvaluationContext, library: LibraryResource, chiller: ChillerResource
    ) -> dg.SensorResult | dg.SkipReason:
        """Add new tape products to the ledger, tick it once, launch what is staged."""
        if not chiller.enabled:
            return dg.SkipReason("no Chiller URL set: EODC products are read directly")
        state = StagingCursor.from_json(context.cursor)
        lib = library.library()
        jobs, errors = load_jobs(lib.jobs_dir, providers=PROVIDER_NAMES)
        for error in errors:
            context.log.warning(str(error))
        now = datetime.now(UTC)
        today = now.date()
        tiles, last = refreshed_tiles(context.instance, state.after)
        state.after = state.after if last is None else last
        covered = in_progress(context.instance)
        wanted: dict[str, list[str]] = {}
        for job in jobs:
            if not tiles & set(job.tiles):
                continue
            plan = plan_job(
                job, lib, today=today, now=now, in_progress=covered, available=available,
                staged_providers={STAGED_PROVIDER}, tiles=tiles,
            )  # fmt: skip
            for key, files in plan.to_stage.items():
                if str(key) not in wanted:
                    wanted[str(key)] = sorted(files)
                    state.jobs[str(key)] = job.jid
        added = state.ledger.add(wanted)
        report = chiller.tick(state.ledger, now=now)
        requests = []
        by_job: dict[str, set[TileDate]] = {}
        for ready_key in report.ready:
            by_job.setdefault(state.jobs.get(ready_key, ""), set()).add(TileDate.parse(ready_key))
        for jid, ready in sorted(by_job.items()):
            job_file = next((j for j in jobs if j.jid == jid), None)
            if job_file is None:
                context.log.warning(f"staged, but job {jid!r} is gone: {sorted(map(str, ready))}")
                continue
            plan = plan_job(
                job_file, lib, today=today, now=now, in_progress=covered, available=available,
                staged_providers={STAGED_PROVIDER}, tape_ready=ready,
                tiles={k.tile for k in ready},
            )  # fmt: skip
            for launch in plan.launches:
                # The staged partitions, with the empty days between them filled (one ranged
                # run), never a day still on tape; the rest is new_acquisitions_sensor's.
                cold = set(plan.to_stage)
                parts = {
                    n: fill_gaps(ks & ready, busy=cold)
                    for n, ks in launch.partitions.items()
                    if ks & ready
                }
                if not parts:
                    continue
                tags = {**launch.tags, **report.run_tags()}
                requests.append(sensor_backfill(context, parts, tags))
                context.log.info(
                    f"backfill for {jid} tasks {launch.tags.get(TASK_TAG)}: "
                    + ", ".join(f"{n} x {len(ks)}" for n, ks in sorted(parts.items()))
                )
        events = not_staged_events(report, state.jobs, jobs, today, available)
        state.jobs = {k: j for k, j in state.jobs.items() if k in state.ledger.partitions}
        if (
            added
            or report.outcomes
            or report.submitted
            or report.poll_errors
            or report.submit_error
        ):
            problems = report.not_staged or report.poll_errors or report.submit_error
            log = context.log.warning if problems else context.log.info
            log(f"{len(added)} partition(s) added to staging\n{report.summary()}")
        if requests:
            return dg.SensorResult(
                run_requests=requests, cursor=state.to_json(), asset_events=events
            )
        return dg.SensorResult(
            skip_reason=f"nothing staged to launch: {report.summary().splitlines()[0]}"
            + (f"; {len(report.not_staged)} file(s) not staged" if report.not_staged else ""),
            cursor=state.to_json(),
            asset_events=events,
        )

    return staging_sensor
