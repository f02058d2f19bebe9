"""What the end-to-end tests ask the running webserver, through its GraphQL API: the same
queries and mutations the UI sends (``DagsterGraphQLClient`` has no backfill method)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

REPOSITORY = {"repositoryLocationName": "s2_assets", "repositoryName": "__repository__"}

WORKSPACE = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""

DAEMONS = """{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy
  lastHeartbeatErrors { message } } } } }"""

ADD_PARTITION = """mutation($repo: RepositorySelector!, $key: String!) {
  addDynamicPartition(repositorySelector: $repo, partitionsDefName: "tiles", partitionKey: $key) {
    __typename ... on AddDynamicPartitionSuccess { partitionKey }
    ... on PythonError { message } ... on UnauthorizedError { message } } }"""

SENSOR = """query($sensor: SensorSelector!) { sensorOrError(sensorSelector: $sensor) {
  __typename ... on Sensor { jobOriginId sensorState { selectorId status } } } }"""

STOP_SENSOR = """mutation($origin: String!, $selector: String!) {
  stopSensor(jobOriginId: $origin, jobSelectorId: $selector) {
    __typename ... on StopSensorMutationResult { instigationState { status } }
    ... on PythonError { message } } }"""

START_SENSOR = """mutation($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename ... on Sensor { sensorState { status } }
    ... on UnauthorizedError { message } ... on PythonError { message } } }"""

LAUNCH_BACKFILL = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId }
    ... on PartitionKeysNotFoundError { partitionKeys }
    ... on PythonError { message } ... on UnauthorizedError { message } } }"""

BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill { status numPartitions } } }"""

BACKFILL_RUNS = """query($id: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status tags { key value } assetSelection { path } } } } }"""

RUN_EVENTS = """query($id: ID!) { logsForRun(runId: $id) { __typename
  ... on EventConnection { events { __typename ... on MessageEvent { message }
    ... on ExecutionStepFailureEvent { error { message } } } } } }"""

FINISHED_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
FINISHED_RUN = {"SUCCESS", "FAILURE", "CANCELED"}


class GraphQLError(AssertionError):
    """The API answered with errors, or with a failure type where success was expected."""


class GraphQL:
    """POSTs to ``<base>/graphql``; every call raises on a transport or GraphQL error."""

    def __init__(self, base_url: str, *, timeout_s: float = 60.0) -> None:
        self.url = f"{base_url}/graphql"
        self.timeout_s = timeout_s
        self.session = requests.Session()

    def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        reply = self.session.post(
            self.url, json={"query": query, "variables": variables}, timeout=self.timeout_s
        )
        if reply.status_code != 200 or "errors" in reply.json():
            raise GraphQLError(f"{self.url} answered {reply.status_code}: {reply.text[:2000]}")
        data: dict[str, Any] = reply.json()["data"]
        return data

    def wait_until_loaded(self, timeout_s: float) -> None:
        """Until the code location is loaded and every required daemon is healthy."""

        def ready() -> str | None:
            entries = self(WORKSPACE)["workspaceOrError"]["locationEntries"]
            for entry in entries:
                error = entry["locationOrLoadError"] or {}
                if error.get("__typename") == "PythonError":
                    raise GraphQLError(f"code location {entry['name']}: {error['message']}")
            if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
                return "code location loading"
            statuses = self(DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
            sick = [s["daemonType"] for s in statuses if s["required"] and not s["healthy"]]
            return f"daemons not healthy yet: {sick}" if sick else None

        poll(ready, timeout_s, interval_s=1.0)

    def add_tile(self, tile: str) -> None:
        result = self(ADD_PARTITION, repo=REPOSITORY, key=tile)["addDynamicPartition"]
        if result["__typename"] != "AddDynamicPartitionSuccess":
            raise GraphQLError(f"adding tile {tile}: {result}")

    def stop_sensor(self, name: str) -> None:
        sensor = self(SENSOR, sensor={**REPOSITORY, "sensorName": name})["sensorOrError"]
        if sensor["__typename"] != "Sensor":
            raise GraphQLError(f"no sensor {name}: {sensor}")
        result = self(
            STOP_SENSOR,
            origin=sensor["jobOriginId"],
            selector=sensor["sensorState"]["selectorId"],
        )["stopSensor"]
        if result.get("instigationState", {}).get("status") != "STOPPED":
            raise GraphQLError(f"stopping {name}: {result}")

    def start_sensor(self, name: str) -> None:
        result = self(START_SENSOR, selector={**REPOSITORY, "sensorName": name})["startSensor"]
        if result.get("sensorState", {}).get("status") != "RUNNING":
            raise GraphQLError(f"starting {name}: {result}")

    def launch_backfill(self, params: dict[str, Any]) -> str:
        result = self(LAUNCH_BACKFILL, params=params)["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise GraphQLError(f"launchPartitionBackfill: {result}")
        backfill_id: str = result["backfillId"]
        return backfill_id

    def backfill_status(self, backfill_id: str) -> str:
        status: str = self(BACKFILL, id=backfill_id)["partitionBackfillOrError"]["status"]
        return status

    def backfill_runs(self, backfill_id: str) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self(BACKFILL_RUNS, id=backfill_id)["runsOrError"]["results"]
        return runs

    def run_messages(self, run_id: str) -> list[str]:
        """Every event message of a run, step failures with their error."""
        events = self(RUN_EVENTS, id=run_id)["logsForRun"].get("events", [])
        return [
            " ".join(filter(None, [e.get("message"), (e.get("error") or {}).get("message")]))
            for e in events
        ]

    def wait_for_backfill(self, backfill_id: str, timeout_s: float) -> list[dict[str, Any]]:
        """Until the backfill is finished; its runs. Fails at once, with the failed run's
        messages, when a run fails."""

        def finished() -> str | None:
            runs = self.backfill_runs(backfill_id)
            for run in runs:
                if run["status"] in ("FAILURE", "CANCELED"):
                    detail = "\n".join(self.run_messages(run["runId"])[-30:])
                    raise GraphQLError(
                        f"backfill {backfill_id}: run {run['runId']} {run['status']}:\n{detail}"
                    )
            status = self.backfill_status(backfill_id)
            if status in FINISHED_BACKFILL:
                return None
            return f"backfill {status}; runs: {[r['status'] for r in runs]}"

        poll(finished, timeout_s, interval_s=2.0)
        return self.backfill_runs(backfill_id)


def poll(check: Callable[[], str | None], timeout_s: float, *, interval_s: float) -> None:
    """Call ``check`` until it returns None; it returns what it still waits for.

    Raises:
        TimeoutError: with the last thing waited for.
    """
    deadline = time.monotonic() + timeout_s
    waiting: str | None = "not checked yet"
    while True:
        try:
            waiting = check()
        except requests.ConnectionError as exc:
            waiting = f"webserver unreachable: {exc}"
        if waiting is None:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"still waiting after {timeout_s:.0f}s: {waiting}")
        time.sleep(interval_s)
