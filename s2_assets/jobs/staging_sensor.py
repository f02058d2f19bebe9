"""``staging_sensor``: EODC products on tape are staged by Chiller, then launched as ONE backfill.

With a Chiller URL set, ``new_acquisitions_sensor`` leaves ``eodc`` products alone and this
sensor takes them: it reads the ``new_partitions`` of each ``acquisitions`` materialization
(its own event-log cursor), asks the governing job task which ``eodc`` products of each
(tile, date) it takes, and adds their zip paths to a ``StagingLedger``. Once per evaluation it
ticks the ledger (poll each open Chiller job once, submit what waits within
``ChillerResource.max_open_jobs`` and ``chunk_size``; never blocks) and launches one backfill
per job file (per ``process_by_line`` chunk) of the partitions whose files are all staged.
Files Chiller did not stage are reported in the backfill's run tags, the sensor log, the
cursor (``ledger.lost``) and as an observation on each partition given up; those partitions
are not launched.

Per tile the backfill spans the first to the last staged day, as ``new_acquisitions_sensor``
does, so it runs as ranged runs; a day inside the span whose products still sit on tape
(waiting, or given up) is cut out, so no run ever reads a cold file.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg

from s2_assets.errors import StagingError
from s2_assets.jobs.automation import (
    asset_names,
    chunk_keys,
    new_partitions_since,
    plan_backfill,
)
from s2_assets.jobs.backfill import backfill_request
from s2_assets.jobs.jobfile import load_jobs
from s2_assets.jobs.model import JobFile
from s2_assets.jobs.options import JOB_TAG, TASK_TAG, TaskOptions, options_for
from s2_assets.library import acquisitions as catalogue
from s2_assets.library.tree import Library
from s2_assets.partitions import TileDate
from s2_assets.providers.base import ProductRecord
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


class TapeProducts:
    """The ``eodc`` rows of each tile's catalogue (read once per evaluation), and what the
    governing task needs from tape for a (tile, date)."""

    def __init__(self, lib: Library, jobs: Sequence[JobFile], today: date) -> None:
        self.lib = lib
        self.jobs = jobs
        self.today = today
        self._rows: dict[str, list[ProductRecord]] = {}
        self._by_day: dict[str, dict[date, list[ProductRecord]]] = {}

    def rows(self, tile: str) -> list[ProductRecord]:
        if tile not in self._rows:
            table = catalogue.read_table(self.lib.acquisitions_path(tile))
            self._rows[tile] = [r for r in table if r.provider == STAGED_PROVIDER]
            # Indexed by day: a ten-year span asks about thousands of days.
            self._by_day[tile] = {}
            for record in self._rows[tile]:
                self._by_day[tile].setdefault(record.date, []).append(record)
        return self._rows[tile]

    def on(self, key: TileDate) -> list[ProductRecord]:
        self.rows(key.tile)
        return self._by_day[key.tile].get(key.date, [])

    def options(self, key: TileDate, job: str | None) -> TaskOptions:
        return options_for(self.jobs, key.tile, key.date, today=self.today, job=job)

    def files_to_stage(self, key: TileDate, job: str | None) -> list[str]:
        """Zips of the ``eodc`` products the task takes on ``key`` that are not in the library.

        Cloud cover of tape products is unknown until they are staged, so the cloud limit is
        applied by ``l1c``/``l2a`` once the zip is readable; baseline filters apply here.
        """
        options = self.options(key, job)
        day = self.on(key)
        chosen = [
            r
            for level in options.levels
            for r in options.select([r for r in day if r.level == level])
        ]
        return sorted({r.location for r in chosen if not self.lib.has_product(r.name)})


def launch_plan(
    ready: Sequence[TileDate], job: str, tape: TapeProducts, available: set[str]
) -> dict[str, set[TileDate]]:
    """Which assets to backfill for the staged partitions ``ready`` of one job file.

    ``plan_backfill`` picks the assets the task asks for and fills each tile's span; days of
    the span that still need files from tape are cut out again (a ranged run would read
    them cold), so Dagster splits the backfill there into one ranged run per stretch.
    """
    tiles = {k.tile: tape.rows(k.tile) for k in ready}
    plan = plan_backfill(
        ready, tiles, tape.jobs, job=job or None, today=tape.today, available=available
    )
    staged = set(ready)
    blocked: dict[TileDate, bool] = {}
    for name, span in plan.items():
        for key in span - staged:
            if key not in blocked:
                blocked[key] = bool(tape.files_to_stage(key, job or None))
        plan[name] = {k for k in span if k in staged or not blocked[k]}
    return {name: span for name, span in plan.items() if span}


def not_staged_events(
    report: TickReport, jobs: dict[str, str], tape: TapeProducts, available: set[str]
) -> list[dg.AssetObservation]:
    """One observation per asset and partition given up, listing its files not staged."""
    ended = ",".join(outcome.job_id for outcome in report.outcomes)
    events = []
    for raw_key, files in report.dropped.items():
        key = TileDate.parse(raw_key)
        for level in tape.options(key, jobs.get(raw_key) or None).levels:
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
    available = asset_names(product_assets)

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
        jobs, errors = load_jobs(lib.jobs_dir)
        for error in errors:
            context.log.warning(str(error))
        now = datetime.now(UTC)
        tape = TapeProducts(lib, jobs, now.date())
        found, last = new_partitions_since(context.instance, state.after)
        state.after = state.after if last is None else last
        wanted: dict[str, list[str]] = {}
        for found_job, keys in sorted(found.items(), key=lambda item: item[0] or ""):
            for key in keys:
                files = tape.files_to_stage(key, found_job)
                if files:
                    wanted[str(key)] = files
                    state.jobs[str(key)] = found_job or ""
        added = state.ledger.add(wanted)
        report = chiller.tick(state.ledger, now=now)
        repository = context.repository_def
        assert repository is not None, "sensor evaluated without its definitions"
        requests = []
        by_job: dict[str, list[str]] = {}
        for ready_key in report.ready:
            by_job.setdefault(state.jobs.get(ready_key, ""), []).append(ready_key)
        for job, ready in sorted(by_job.items()):
            parsed = [TileDate.parse(k) for k in ready]
            # One backfill per process_by_line chunk, as new_acquisitions_sensor does.
            for tasks, group in chunk_keys(parsed, jobs, job=job or None, today=tape.today):
                plan = launch_plan(group, job, tape, available)
                if not plan:
                    context.log.warning(
                        f"staged, but no asset to launch for {sorted(str(k) for k in group)}"
                    )
                    continue
                tags = {JOB_TAG: job} if job else {}
                if tasks:
                    tags[TASK_TAG] = ",".join(str(t) for t in tasks)
                tags.update(report.run_tags())
                partitions = {dg.AssetKey(n): {str(k) for k in ks} for n, ks in plan.items()}
                requests.append(backfill_request(partitions, repository.asset_graph, tags))
                context.log.info(
                    f"backfill for {job or 'manual refresh'} tasks {list(tasks)}: "
                    + ", ".join(f"{n} x {len(ks)}" for n, ks in sorted(plan.items()))
                )
        events = not_staged_events(report, state.jobs, tape, available)
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
