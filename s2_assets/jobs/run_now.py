"""``s2-assets run <jid>``: sen2chain's ``Job.run()``, now.

In-process (default): the job's catalogue refresh runs here (one run per tile and provider,
tagged as one tick), then the planner (:mod:`s2_assets.jobs.planner`) says what the job
wants and the library lacks. With Chiller configured, the tape products it misses are staged
first and waited for; partitions whose files were not staged are left out, so no run reads a
cold file. What is missing then runs here as ranged runs per tile (one per stretch), all
recorded in the ``$DAGSTER_HOME`` instance so the UI shows them.

Against a running webserver: the job's refresh runs are submitted with Dagster's own GraphQL
client (``dagster_graphql.DagsterGraphQLClient``), tagged as one tick; the daemon's
``new_acquisitions_sensor`` plans the job once they have finished and launches the backfill.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import dagster as dg

from s2_assets.errors import S2AssetsError
from s2_assets.jobs.automation import discovery_config, discovery_requests, tick_windows
from s2_assets.jobs.jobfile import job_path, load_job
from s2_assets.jobs.options import JOB_TAG
from s2_assets.jobs.planner import JobPlan, plan_job
from s2_assets.jobs.reconcile import TICK_TAG, in_progress
from s2_assets.library.tree import Library
from s2_assets.partitions import TileDate, range_tags
from s2_assets.providers.base import PROVIDER_NAMES
from s2_assets.resources.chiller import ChillerResource

STAGED_PROVIDER = "eodc"


class WebserverError(S2AssetsError):
    """The webserver refused a request; the message carries its own words."""


@dataclass(frozen=True)
class RunSummary:
    """What ``run_job_now`` did."""

    discovery_runs: int
    product_runs: int
    partitions: int
    plan: JobPlan
    not_staged: tuple[str, ...] = ()


def run_job_now(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    lib: Library,
    jid: str,
    *,
    chiller: ChillerResource | None = None,
) -> RunSummary:
    """Refresh the job's catalogue, plan, stage what is on tape, run what is missing.

    Args:
        chiller: overrides the definitions' Chiller resource (tests poll faster).

    Raises:
        RuntimeError: naming the run that failed.
    """
    job = load_job(job_path(lib.jobs_dir, jid), providers=PROVIDER_NAMES)
    now = datetime.now(UTC)
    discovery = discovery_requests(job, instance, now.date(), f"run-now {now.isoformat()}")
    asset_job = defs.resolve_job_def(f"{jid}_job")
    for request in discovery:
        result = asset_job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            run_config=request.run_config,
            tags=request.tags,
        )
        if not result.success:
            raise RuntimeError(f"{jid}: discovery run {result.run_id} failed")
    repository = defs.get_repository_def()
    available = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    chiller = chiller or (defs.resources or {}).get("chiller")
    staged = (
        {STAGED_PROVIDER} if isinstance(chiller, ChillerResource) and chiller.enabled else set()
    )
    covered = in_progress(instance)
    plan = plan_job(
        job, lib, today=now.date(), now=now, in_progress=covered, available=available,
        staged_providers=staged,
    )  # fmt: skip
    not_staged: list[str] = []
    if plan.to_stage and isinstance(chiller, ChillerResource):
        files = sorted({f for fs in plan.to_stage.values() for f in fs})
        not_staged = chiller.wait(chiller.submit(files))
        lost = set(not_staged)
        ready = {k for k, fs in plan.to_stage.items() if not fs & lost}
        plan = plan_job(
            job, lib, today=now.date(), now=now, in_progress=covered, available=available,
            staged_providers=staged, tape_ready=ready,
        )  # fmt: skip
    global_job = defs.resolve_implicit_global_asset_job_def()
    runs = partitions = 0
    for launch in plan.launches:
        keys = {k for ks in launch.partitions.values() for k in ks}
        partitions += len(keys)
        runs += run_stretches(global_job, instance, launch.partitions, launch.tags)
    return RunSummary(len(discovery), runs, partitions, plan, tuple(not_staged))


def run_stretches(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    partitions: Mapping[str, set[TileDate]],
    tags: Mapping[str, str],
) -> int:
    """What the backfill daemon makes of a launch: one ranged run per contiguous stretch of
    each tile, selecting the assets with something to do in it. Returns the number of runs.

    Raises:
        RuntimeError: naming the run and stretch that failed.
    """
    keys = sorted({k for ks in partitions.values() for k in ks})
    stretches: list[list[TileDate]] = []
    for key in keys:
        previous = stretches[-1][-1] if stretches else None
        if previous and previous.tile == key.tile and key.date - previous.date == timedelta(1):
            stretches[-1].append(key)
        else:
            stretches.append([key])
    failed = []
    for stretch in stretches:
        members = set(stretch)
        assets = sorted(name for name, ks in partitions.items() if ks & members)
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(name) for name in assets],
            tags={**tags, **range_tags(stretch[0].tile, stretch[0].date, stretch[-1].date)},
            raise_on_error=False,
        )
        if not result.success:
            failed.append(f"run {result.run_id} for {stretch[0]}..{stretch[-1].date}")
    if failed:
        # Every stretch ran; what failed is wanted again at the next tick.
        raise RuntimeError("; ".join(failed) + " failed (the next run or tick retries it)")
    return len(stretches)


def run_ranges(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    assets: Iterable[str],
    keys: Iterable[TileDate],
    tags: Mapping[str, str],
    run_config: Mapping[str, object] | None = None,
) -> int:
    """What the backfill daemon makes of a backfill under ``BackfillPolicy.single_run``: one
    ranged run per tile, from its first to its last day. Returns the number of runs.

    Raises:
        RuntimeError: naming the run and tile that failed.
    """
    keys = list(keys)
    tiles = sorted({k.tile for k in keys})
    for tile in tiles:
        days = sorted(k.date for k in keys if k.tile == tile)
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(name) for name in assets],
            tags={**tags, **range_tags(tile, days[0], days[-1])},
            run_config=dict(run_config or {}),
        )
        if not result.success:
            raise RuntimeError(f"run {result.run_id} for {tile} failed")
    return len(tiles)


def submit_job(url: str, lib: Library, jid: str, location: str = "s2_assets") -> list[str]:
    """Submit the job's catalogue refresh to a running webserver, as one tick; the daemon's
    ``new_acquisitions_sensor`` plans the job once it has finished. Returns the run ids.

    Raises:
        WebserverError: with the server's own error (GraphQL errors, HTTP status and body).
    """
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    job = load_job(job_path(lib.jobs_dir, jid), providers=PROVIDER_NAMES)
    parts = urlsplit(url if "://" in url else f"http://{url}")
    client = DagsterGraphQLClient(
        parts.hostname or "127.0.0.1", port_number=parts.port, use_https=parts.scheme == "https"
    )
    now = datetime.now(UTC)
    tick = f"run-now {now.isoformat()}"
    run_ids = []
    try:
        # The job file may be new or changed since the code location loaded it.
        reloaded = client.reload_repository_location(location)
        if reloaded.failure_type is not None:
            raise WebserverError(
                f"{url}: reloading code location {location!r} failed "
                f"({reloaded.failure_type}): {reloaded.message}"
            )
        for tile in job.tiles:
            add_tile(client, location, tile)
        for (tile, provider), (start, end) in sorted(tick_windows(job, now.date()).items()):
            run_ids.append(
                client.submit_job_execution(
                    f"{jid}_job",
                    repository_location_name=location,
                    repository_name="__repository__",
                    run_config=discovery_config(start, end, provider),
                    tags={"dagster/partition": tile, JOB_TAG: jid, TICK_TAG: tick},
                )
            )
    except DagsterGraphQLClientError as exc:
        raise WebserverError(f"{url}: {jid}: {describe_client_error(exc)}") from None
    return run_ids


_ADD_TILE = """mutation($r: RepositorySelector!, $k: String!) {
  addDynamicPartition(repositorySelector: $r, partitionsDefName: "tiles", partitionKey: $k) {
    __typename
    ... on AddDynamicPartitionSuccess { partitionKey }
    ... on DuplicateDynamicPartitionError { partitionName }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  } }"""


def add_tile(client: Any, location: str, tile: str) -> None:
    """Register ``tile`` in the ``tiles`` partitions (the UI's own mutation). The client has
    no method for it, so this goes through its query call."""
    from dagster_graphql import DagsterGraphQLClientError

    selector = {"repositoryLocationName": location, "repositoryName": "__repository__"}
    data = client._execute(_ADD_TILE, {"r": selector, "k": tile})["addDynamicPartition"]
    if data["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
        raise DagsterGraphQLClientError(data["__typename"], data.get("message", ""))


def describe_client_error(exc: Exception) -> str:
    """The server's words in a client error: its GraphQL errors, or the HTTP status and body
    (gql hides a 400's body in the exception it raises)."""
    parts = [str(a) for a in exc.args if a]
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        code = getattr(cause, "code", None) or getattr(cause, "status", None)
        body = getattr(cause, "body", None) or getattr(cause, "text", None)
        errors = getattr(cause, "errors", None)
        if errors:
            parts.append(f"GraphQL errors: {errors}")
        if code or body:
            parts.append(f"HTTP {code}: {str(body)[:2000]}")
        if not (errors or code or body):
            parts.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    return "; ".join(dict.fromkeys(p for p in parts if p)) or type(exc).__name__
