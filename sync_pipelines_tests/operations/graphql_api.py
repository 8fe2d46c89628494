"""The webserver's GraphQL API as the UI uses it: launch runs, follow them, read what they recorded.

The mutations are the UI's own (``launchPipelineExecution`` with the executionParams the "Materialize" button
and the launchpad send, ``stopRunningSchedule``, ``stopSensor``), so a test passing here means the same clicks
work in the browser.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

LOCATION = "sync_pipelines"
REPOSITORY = "__repository__"
TERMINAL = frozenset({"SUCCESS", "FAILURE", "CANCELED"})

REPOSITORY_SELECTOR = {"repositoryName": REPOSITORY, "repositoryLocationName": LOCATION}

METADATA = """
fragment Metadata on MetadataEntry {
  __typename label
  ... on IntMetadataEntry { intValue }
  ... on FloatMetadataEntry { floatValue }
  ... on BoolMetadataEntry { boolValue }
  ... on TextMetadataEntry { text }
  ... on JsonMetadataEntry { jsonString }
  ... on MarkdownMetadataEntry { mdStr }
}
"""

WORKSPACE = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name loadStatus
        locationOrLoadError { __typename ... on PythonError { message stack } }
      }
    }
    ... on PythonError { message }
  }
}
"""

REPOSITORY_CONTENTS = """
query Repository($selector: RepositorySelector!) {
  repositoryOrError(repositorySelector: $selector) {
    __typename
    ... on Repository {
      assetGroups { groupName assetKeys { path } }
      jobs { name }
      schedules { name cronSchedule executionTimezone pipelineName defaultStatus scheduleState { id status } }
      sensors { name minIntervalSeconds sensorType defaultStatus sensorState { id status } }
    }
    ... on Error { message }
  }
}
"""

DAEMON_HEALTH = """
query DaemonHealth {
  instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } }
}
"""

# The UI's LaunchPipelineExecution mutation (ui-core LaunchAssetExecutionButton / launchpad).
LAUNCH = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { id runId pipelineName status } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""

# The UI's LaunchPartitionBackfill mutation ("Materialize all" with every partition, or "Launch backfill").
LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""

RUNS_WITH_TAG = """
query RunsWithTag($key: String!, $value: String!) {
  runsOrError(filter: {tags: [{key: $key, value: $value}]}) {
    __typename
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      runId pipelineName status creationTime startTime endTime updateTime
      tags { key value }
    }
    ... on Error { message }
  }
}
"""

EVENTS = """
query Events($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
    __typename
    ... on EventConnection {
      cursor hasMore
      events {
        __typename
        ... on MessageEvent { message timestamp level stepKey eventType }
        ... on ErrorEvent { error { message } }
      }
    }
    ... on Error { message }
  }
}
"""

ASSET_MATERIALIZATIONS = (
    """
query AssetMaterializations($assetKey: AssetKeyInput!, $limit: Int) {
  assetOrError(assetKey: $assetKey) {
    __typename
    ... on Asset {
      assetMaterializations(limit: $limit) { runId partition timestamp metadataEntries { ...Metadata } }
    }
  }
}
"""
    + METADATA
)

ASSET_OBSERVATIONS = (
    """
query AssetObservations($assetKey: AssetKeyInput!, $limit: Int) {
  assetOrError(assetKey: $assetKey) {
    __typename
    ... on Asset { assetObservations(limit: $limit) { runId timestamp metadataEntries { ...Metadata } } }
  }
}
"""
    + METADATA
)

ASSET_NODES = """
query AssetNodes($assetKeys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $assetKeys) {
    assetKey { path }
    groupName jobNames
    partitionDefinition { name description }
    assetChecksOrError { __typename ... on AssetChecks { checks { name jobNames blocking } } }
  }
}
"""

CHECK_EXECUTIONS = (
    """
query CheckExecutions($assetKey: AssetKeyInput!, $checkName: String!, $limit: Int!) {
  assetCheckExecutions(assetKey: $assetKey, checkName: $checkName, limit: $limit) {
    runId status timestamp
    evaluation { success severity description metadataEntries { ...Metadata } }
  }
}
"""
    + METADATA
)

SCHEDULE_STATE = """
query Schedule($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename
    ... on Schedule {
      name cronSchedule executionTimezone
      scheduleState { id status }
      futureTicks(limit: 1) { results { timestamp } }
    }
    ... on Error { message }
  }
}
"""

STOP_SCHEDULE = """
mutation StopSchedule($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on ScheduleStateResult { scheduleState { id status } }
    ... on PythonError { message }
    ... on Error { message }
  }
}
"""

SENSOR_STATE = """
query Sensor($selector: SensorSelector!, $limit: Int) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      name minIntervalSeconds
      sensorState {
        id status
        ticks(limit: $limit) { tickId status timestamp runIds runKeys skipReason cursor error { message } }
      }
    }
    ... on Error { message }
  }
}
"""

STOP_SENSOR = """
mutation StopSensor($id: String!) {
  stopSensor(id: $id) {
    __typename
    ... on StopSensorMutationResult { instigationState { id status } }
    ... on PythonError { message }
    ... on Error { message }
  }
}
"""

# The UI's "Set cursor" of a sensor's page.
SET_SENSOR_CURSOR = """
mutation SetSensorCursor($selector: SensorSelector!, $cursor: String) {
  setSensorCursor(sensorSelector: $selector, cursor: $cursor) {
    __typename
    ... on Sensor { sensorState { id status } }
    ... on PythonError { message }
    ... on Error { message }
  }
}
"""


class GraphQLError(AssertionError):
    """The webserver answered with GraphQL errors (a bad query, or a resolver that raised)."""


class LaunchRefused(AssertionError):
    """The webserver would not create the run (bad config, bad selection, conflicting tags...)."""


class GraphQLClient:
    def __init__(self, url: str, timeout: float = 60) -> None:
        self.url = url
        self.timeout = timeout

    def __call__(self, document: str, **variables: Any) -> dict[str, Any]:
        response = httpx.post(
            self.url, json={"query": document, "variables": variables}, timeout=self.timeout
        )
        try:
            body = response.json()
        except ValueError:
            body = {}
        if body.get("errors"):
            raise GraphQLError(json.dumps(body["errors"], indent=2)[:6000])
        # A resolver's PythonError comes back as data, with HTTP 500: the caller reads it from the data.
        if not body.get("data"):
            raise GraphQLError(f"HTTP {response.status_code}: {response.text[:6000]}")
        return body["data"]


def metadata_values(entries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``{label: value}`` of GraphQL metadata entries (JSON entries decoded)."""
    values: dict[str, Any] = {}
    for entry in entries:
        kind = entry["__typename"]
        if kind == "IntMetadataEntry":
            values[entry["label"]] = entry["intValue"]
        elif kind == "FloatMetadataEntry":
            values[entry["label"]] = entry["floatValue"]
        elif kind == "BoolMetadataEntry":
            values[entry["label"]] = entry["boolValue"]
        elif kind == "TextMetadataEntry":
            values[entry["label"]] = entry["text"]
        elif kind == "JsonMetadataEntry":
            values[entry["label"]] = json.loads(entry["jsonString"])
        elif kind == "MarkdownMetadataEntry":
            values[entry["label"]] = entry["mdStr"]
        else:
            values[entry["label"]] = kind
    return values


def asset_key(name: str) -> dict[str, list[str]]:
    return {"path": name.split("/")}


def tag_map(tags: Iterable[Mapping[str, str]]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in tags}


class DagsterUi:
    """What the UI asks the webserver, one method per screen or button."""

    def __init__(self, graphql: GraphQLClient, diagnostics: Callable[[], str] = lambda: "") -> None:
        self.graphql = graphql
        self.diagnostics = diagnostics

    # -- the code location -------------------------------------------------------------------------------
    def wait_for_repository(self, timeout: float) -> None:
        """Until the code location has loaded; a load error fails at once with its message."""
        deadline = time.monotonic() + timeout
        while True:
            workspace = self.graphql(WORKSPACE)["workspaceOrError"]
            entries = {entry["name"]: entry for entry in workspace.get("locationEntries", [])}
            entry = entries.get(LOCATION)
            if entry and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"] or {}
                if loaded.get("__typename") == "PythonError":
                    raise AssertionError(f"the code location failed to load: {loaded['message']}")
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the code location did not load within {timeout} s: {workspace}")
            time.sleep(0.5)

    def repository(self) -> dict[str, Any]:
        found = self.graphql(REPOSITORY_CONTENTS, selector=REPOSITORY_SELECTOR)["repositoryOrError"]
        assert found["__typename"] == "Repository", found
        return found

    def asset_nodes(self, assets: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """The asset graph's nodes (all of them, or ``assets``) with their groups, jobs and checks."""
        keys = None if assets is None else [asset_key(name) for name in assets]
        nodes = self.graphql(ASSET_NODES, assetKeys=keys)["assetNodes"]
        return {"/".join(node["assetKey"]["path"]): node for node in nodes}

    def daemons_healthy(self) -> bool:
        statuses = self.graphql(DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return bool(statuses) and all(status["healthy"] for status in statuses if status["required"])

    # -- launching -------------------------------------------------------------------------------------------
    def launch(
        self,
        job: str,
        *,
        run_config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        assets: Iterable[str] | None = None,
        checks: Iterable[tuple[str, str]] | None = None,
    ) -> str:
        """Launch ``job`` as the launchpad does, or a subset of its assets/checks as "Materialize" does."""
        selector: dict[str, Any] = {**REPOSITORY_SELECTOR, "pipelineName": job}
        if assets is not None:
            selector["assetSelection"] = [asset_key(name) for name in assets]
        if checks is not None:
            selector["assetCheckSelection"] = [
                {"assetKey": asset_key(asset), "name": name} for asset, name in checks
            ]
        params = {
            "mode": "default",
            "selector": selector,
            "runConfigData": dict(run_config or {}),
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
        }
        result = self.graphql(LAUNCH, executionParams=params)["launchPipelineExecution"]
        if result["__typename"] != "LaunchRunSuccess":
            detail = result.get("message") or json.dumps(result, indent=2)
            raise LaunchRefused(f"launching {job} was refused: {detail[:4000]}")
        return result["run"]["runId"]

    def launch_backfill_of_every_partition(self, assets: Iterable[str]) -> str:
        """What "Materialize all" does with every partition selected: a backfill; returns its id."""
        params = {"assetSelection": [asset_key(name) for name in assets], "allPartitions": True}
        result = self.graphql(LAUNCH_BACKFILL, backfillParams=params)["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise LaunchRefused(f"the backfill was refused: {json.dumps(result)[:4000]}")
        return result["backfillId"]

    def runs_tagged(self, key: str, value: str) -> list[dict[str, Any]]:
        found = self.graphql(RUNS_WITH_TAG, key=key, value=value)["runsOrError"]
        assert found["__typename"] == "Runs", found
        return found["results"]

    # -- runs --------------------------------------------------------------------------------------------------
    def run(self, run_id: str) -> dict[str, Any]:
        found = self.graphql(RUN, runId=run_id)["runOrError"]
        assert found["__typename"] == "Run", found
        return found

    def wait_for_run(
        self, run_id: str, timeout: float = 300, until: Iterable[str] = TERMINAL
    ) -> dict[str, Any]:
        wanted = set(until)
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in wanted:
                return run
            if run["status"] in TERMINAL:
                raise AssertionError(
                    f"run {run_id} ended {run['status']} before reaching {sorted(wanted)}\n"
                    f"{self.run_report(run_id)}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"run {run_id} still {run['status']} after {timeout} s\n{self.run_report(run_id)}"
                )
            time.sleep(0.5)

    def wait_for_success(self, run_id: str, timeout: float = 300) -> dict[str, Any]:
        return self.wait_for_run(run_id, timeout, until={"SUCCESS"})

    def events(self, run_id: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.graphql(EVENTS, runId=run_id, cursor=cursor)["logsForRun"]
            assert page["__typename"] == "EventConnection", page
            events += page["events"]
            cursor = page["cursor"]
            if not page["hasMore"]:
                return events

    def event_times(self, run_id: str) -> dict[str, float]:
        """The first time each event type appears in the run's log (seconds since the epoch)."""
        times: dict[str, float] = {}
        for event in self.events(run_id):
            if event.get("eventType") and event["eventType"] not in times:
                times[event["eventType"]] = int(event["timestamp"]) / 1000
        return times

    def run_report(self, run_id: str) -> str:
        """The run's event log and the processes' log tails, for a failure message."""
        try:
            lines = []
            for event in self.events(run_id):
                error = (event.get("error") or {}).get("message", "")
                lines.append(
                    f"{event.get('eventType') or event['__typename']}: {event.get('message', '')[:500]} {error[:3000]}"
                )
            log = "\n".join(lines)
        except (AssertionError, httpx.HTTPError) as error:
            log = f"(event log unavailable: {error})"
        return f"----- event log of run {run_id} -----\n{log}\n{self.diagnostics()}"

    # -- what runs recorded ---------------------------------------------------------------------------------
    def materializations(
        self, asset: str, run_id: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """The asset page's materializations (newest first): run, partition and metadata as plain values."""
        found = self.graphql(ASSET_MATERIALIZATIONS, assetKey=asset_key(asset), limit=limit)["assetOrError"]
        if found["__typename"] != "Asset":
            return []
        return [
            {
                "run_id": event["runId"],
                "partition": event["partition"],
                "metadata": metadata_values(event["metadataEntries"]),
            }
            for event in found["assetMaterializations"]
            if run_id is None or event["runId"] == run_id
        ]

    def observations(self, asset: str, run_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        found = self.graphql(ASSET_OBSERVATIONS, assetKey=asset_key(asset), limit=limit)["assetOrError"]
        if found["__typename"] != "Asset":
            return []
        return [
            {"run_id": event["runId"], "metadata": metadata_values(event["metadataEntries"])}
            for event in found["assetObservations"]
            if run_id is None or event["runId"] == run_id
        ]

    def check_executions(self, asset: str, check: str, limit: int = 20) -> list[dict[str, Any]]:
        """The check's executions (newest first), each with its evaluation's outcome and metadata."""
        executions = self.graphql(CHECK_EXECUTIONS, assetKey=asset_key(asset), checkName=check, limit=limit)
        found = []
        for execution in executions["assetCheckExecutions"]:
            evaluation = execution["evaluation"] or {}
            found.append(
                {
                    "run_id": execution["runId"],
                    "status": execution["status"],
                    "passed": evaluation.get("success"),
                    "severity": evaluation.get("severity"),
                    "description": evaluation.get("description"),
                    "metadata": metadata_values(evaluation.get("metadataEntries", [])),
                }
            )
        return found

    # -- schedules and sensors ----------------------------------------------------------------------------
    def schedule(self, name: str) -> dict[str, Any]:
        selector = {**REPOSITORY_SELECTOR, "scheduleName": name}
        found = self.graphql(SCHEDULE_STATE, selector=selector)["scheduleOrError"]
        assert found["__typename"] == "Schedule", found
        return found

    def stop_schedule(self, name: str) -> None:
        state_id = self.schedule(name)["scheduleState"]["id"]
        result = self.graphql(STOP_SCHEDULE, id=state_id)["stopRunningSchedule"]
        assert result["__typename"] == "ScheduleStateResult", result
        assert result["scheduleState"]["status"] == "STOPPED", result

    def sensor(self, name: str, ticks: int = 20) -> dict[str, Any]:
        selector = {**REPOSITORY_SELECTOR, "sensorName": name}
        found = self.graphql(SENSOR_STATE, selector=selector, limit=ticks)["sensorOrError"]
        assert found["__typename"] == "Sensor", found
        return found

    def sensor_ticks(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        """The sensor's ticks, newest first."""
        return self.sensor(name, limit)["sensorState"]["ticks"]

    def set_sensor_cursor(self, name: str, cursor: str) -> None:
        selector = {**REPOSITORY_SELECTOR, "sensorName": name}
        result = self.graphql(SET_SENSOR_CURSOR, selector=selector, cursor=cursor)["setSensorCursor"]
        assert result["__typename"] == "Sensor", result

    def stop_sensor(self, name: str) -> None:
        state_id = self.sensor(name)["sensorState"]["id"]
        result = self.graphql(STOP_SENSOR, id=state_id)["stopSensor"]
        assert result["__typename"] == "StopSensorMutationResult", result
        assert result["instigationState"]["status"] == "STOPPED", result
