"""``s2-assets run <jid>``: sen2chain's ``Job.run()``, now.

In-process (default): the schedule's discovery runs for the job's tiles, then the backfill
the sensor would launch is executed here as one ranged run per tile, all recorded in the
``$DAGSTER_HOME`` instance so the UI shows them. Against a running webserver: the job's
discovery runs are submitted through GraphQL and the daemon's sensor does the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import requests

from s2_assets.jobs.automation import (
    discovery_config,
    discovery_requests,
    new_partitions_since,
    plan_backfills,
    tick_windows,
)
from s2_assets.jobs.jobfile import job_path, load_job, load_jobs
from s2_assets.library.tree import Library
from s2_assets.partitions import TileDate, range_tags

_ADD_TILE = """mutation($r: RepositorySelector!, $k: String!) {
  addDynamicPartition(repositorySelector: $r, partitionsDefName: "tiles", partitionKey: $k) {
  __typename } }"""
_LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } ... on InvalidSubsetError { message }
  ... on JobNotFoundError { message } } }"""


@dataclass(frozen=True)
class RunSummary:
    """What ``run_job_now`` did."""

    discovery_runs: int
    product_runs: int
    partitions: int


def run_job_now(
    defs: dg.Definitions, instance: dg.DagsterInstance, lib: Library, jid: str
) -> RunSummary:
    """Discover and process the job's products in this process.

    Raises:
        RuntimeError: naming the run that failed.
    """
    job = load_job(job_path(lib.jobs_dir, jid))
    now = datetime.now(UTC)
    repository = defs.get_repository_def()
    last_seen = _last_event(instance)
    discovery = discovery_requests(job, instance, now.date(), now.isoformat())
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
    new_by_job, _ = new_partitions_since(instance, last_seen)
    jobs, _errors = load_jobs(lib.jobs_dir)
    graph_assets = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    plans = plan_backfills(
        {jid: new_by_job.get(jid, [])}, lib, jobs, today=now.date(), available=graph_assets
    )
    global_job = defs.resolve_implicit_global_asset_job_def()
    runs = partitions = 0
    for plan in plans:
        keys = {k for ks in plan.partitions.values() for k in ks}
        partitions += len(keys)
        runs += run_ranges(global_job, instance, sorted(plan.partitions), keys, plan.tags)
    return RunSummary(len(discovery), runs, partitions)


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


def _last_event(instance: dg.DagsterInstance) -> int:
    records = instance.fetch_materializations(dg.AssetKey("acquisitions"), limit=1).records
    return records[0].storage_id if records else 0


def submit_job(url: str, lib: Library, jid: str, location: str = "s2_assets") -> list[str]:
    """Submit the job's discovery runs to a running webserver (the daemon's sensor launches
    the backfill); returns their run ids.

    Raises:
        RuntimeError: with the server's message when a request is refused.
    """
    job = load_job(job_path(lib.jobs_dir, jid))
    repository = {"repositoryLocationName": location, "repositoryName": "__repository__"}
    run_ids = []
    for (tile, provider), (start, end) in sorted(
        tick_windows(job, datetime.now(UTC).date()).items()
    ):
        _graphql(url, _ADD_TILE, {"r": repository, "k": tile})
        params = {
            "selector": {**repository, "jobName": f"{jid}_job"},
            "runConfigData": discovery_config(start, end, provider),
            "executionMetadata": {
                "tags": [
                    {"key": "dagster/partition", "value": tile},
                    {"key": "s2/job", "value": jid},
                ]
            },
        }
        result = _graphql(url, _LAUNCH, {"p": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"{jid}: launching the discovery of {tile} refused: {result}")
        run_ids.append(result["run"]["runId"])
    return run_ids


def _graphql(url: str, query: str, variables: dict[str, object]) -> dict[str, Any]:
    reply = requests.post(
        f"{url.rstrip('/')}/graphql", json={"query": query, "variables": variables}, timeout=60
    )
    reply.raise_for_status()
    body = reply.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL error from {url}: {body['errors']}")
    return dict(body["data"])
