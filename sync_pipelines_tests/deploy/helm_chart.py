"""What the official ``dagster/dagster`` Helm chart (1.13.27) does with the values deploy/helm/values.yaml sets:
the facts of its values schema and of its instance template this project relies on, written down here (no
copy of the chart's files), and a renderer of the chart's ``dagster.yaml`` for those values.

The facts, from the chart's values schema (``schema/charts/dagster/...``) and its templates
(``templates/configmap-instance.yaml`` and ``templates/helpers/instance/*.tpl``):

- ``concurrency`` is a top-level block ``{enabled, pools: {defaultLimit, granularity, opGranularityRunBuffer},
  runs: {maxConcurrentRuns, tagConcurrencyLimits: [{key, value, limit}]}}``, extra keys forbidden. When
  enabled it is rendered as the instance's ``concurrency`` section (snake_case keys); the chart fails the
  render if ``concurrency.runs`` limits and ``queuedRunCoordinator`` limits are both set.
- ``dagsterDaemon.runCoordinator.type`` is ``QueuedRunCoordinator`` or ``CustomRunCoordinator``. The queued
  type's config keys are only maxConcurrentRuns, tagConcurrencyLimits, dequeueIntervalSeconds,
  dequeueUseThreads, dequeueNumWorkers, blockOpConcurrencyLimitedRuns: no code-server retries. The custom type
  is ``{module, class, config}``, rendered as they are.
- ``dagsterDaemon.runMonitoring`` renders only enabled, start_timeout_seconds, cancel_timeout_seconds,
  max_resume_run_attempts, poll_interval_seconds, free_slots_after_run_end_seconds, and only when enabled;
  ``dagsterDaemon.runRetries`` renders only enabled and max_retries, and only when enabled.
- ``additionalInstanceConfig`` is a mapping appended to the instance config as it is.
- A user deployment's ``resources`` go into its code location's container context (with
  ``includeConfigInLaunchedRuns``), which run pods inherit and which wins over
  ``runLauncher.config.k8sRunLauncher.resources``: they size the run pods.
- ``dagsterWebserver.envSecrets`` and ``dagster-user-deployments.deployments[].envSecrets`` are lists of
  ``{name}`` Secrets whose keys become environment variables; run pods inherit the user deployment's when
  ``includeConfigInLaunchedRuns.enabled``.
"""

from __future__ import annotations

from typing import Any

CHART_VERSION = "1.13.27"

CONCURRENCY_KEYS = {"enabled", "pools", "runs"}
CONCURRENCY_POOL_KEYS = {"defaultLimit", "granularity", "opGranularityRunBuffer"}
CONCURRENCY_RUN_KEYS = {"maxConcurrentRuns", "tagConcurrencyLimits"}
TAG_LIMIT_KEYS = {"key", "value", "limit"}
RUN_COORDINATOR_TYPES = {"QueuedRunCoordinator", "CustomRunCoordinator"}
QUEUED_RUN_COORDINATOR_KEYS = {
    "maxConcurrentRuns",
    "tagConcurrencyLimits",
    "dequeueIntervalSeconds",
    "dequeueUseThreads",
    "dequeueNumWorkers",
    "blockOpConcurrencyLimitedRuns",
}
CUSTOM_CLASS_KEYS = {"module", "class", "config"}
# values key -> dagster.yaml key, for what the chart renders of each block.
RUN_MONITORING_RENDERED = {
    "enabled": "enabled",
    "startTimeoutSeconds": "start_timeout_seconds",
    "cancelTimeoutSeconds": "cancel_timeout_seconds",
    "maxResumeRunAttempts": "max_resume_run_attempts",
    "pollIntervalSeconds": "poll_interval_seconds",
    "freeSlotsAfterRunEndSeconds": "free_slots_after_run_end_seconds",
}
RUN_RETRIES_RENDERED = {"enabled": "enabled", "maxRetries": "max_retries"}
RESOURCE_KEYS = {"requests", "limits"}
# Sections the chart always writes into dagster.yaml, whatever the values.
ALWAYS_RENDERED = {
    "scheduler",
    "schedule_storage",
    "run_launcher",
    "run_storage",
    "event_log_storage",
    "compute_logs",
    "telemetry",
}


def _tag_limits(limits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for limit in limits:
        assert set(limit) <= TAG_LIMIT_KEYS, (
            f"tag limit keys {sorted(limit)}: the chart knows {TAG_LIMIT_KEYS}"
        )
    return [{key: limit[key] for key in ("key", "value", "limit") if key in limit} for limit in limits]


def render_instance(values: dict[str, Any]) -> dict[str, Any]:
    """The settings of the chart's dagster.yaml for ``values`` (storage and launcher left as the chart's own),
    asserting on the way that ``values`` uses only keys the chart has for them."""
    rendered: dict[str, Any] = {section: "(the chart's)" for section in ALWAYS_RENDERED}
    daemon = values.get("dagsterDaemon", {})

    coordinator = daemon.get("runCoordinator", {})
    if daemon.get("enabled") and coordinator.get("enabled"):
        assert coordinator["type"] in RUN_COORDINATOR_TYPES
        if coordinator["type"] == "CustomRunCoordinator":
            custom = coordinator["config"]["customRunCoordinator"]
            assert set(custom) <= CUSTOM_CLASS_KEYS
            rendered["run_coordinator"] = {
                "module": custom["module"],
                "class": custom["class"],
                "config": custom.get("config", {}),
            }
        else:
            queued = coordinator["config"].get("queuedRunCoordinator") or {}
            assert set(queued) <= QUEUED_RUN_COORDINATOR_KEYS, sorted(
                set(queued) - QUEUED_RUN_COORDINATOR_KEYS
            )
            config: dict[str, Any] = {}
            if "maxConcurrentRuns" in queued:
                config["max_concurrent_runs"] = queued["maxConcurrentRuns"]
            if queued.get("tagConcurrencyLimits"):
                config["tag_concurrency_limits"] = _tag_limits(queued["tagConcurrencyLimits"])
            rendered["run_coordinator"] = {
                "module": "dagster.core.run_coordinator",
                "class": "QueuedRunCoordinator",
                **({"config": config} if config else {}),
            }

    concurrency = values.get("concurrency", {})
    assert set(concurrency) <= CONCURRENCY_KEYS
    if concurrency.get("enabled"):
        pools, runs = concurrency.get("pools", {}), concurrency.get("runs", {})
        assert set(pools) <= CONCURRENCY_POOL_KEYS and set(runs) <= CONCURRENCY_RUN_KEYS
        queued = coordinator.get("config", {}).get("queuedRunCoordinator") or {}
        if coordinator.get("type") == "QueuedRunCoordinator":
            assert not (runs.get("tagConcurrencyLimits") and queued.get("tagConcurrencyLimits")), (
                "the chart fails: tag limits in both concurrency.runs and queuedRunCoordinator"
            )
            assert not ("maxConcurrentRuns" in runs and "maxConcurrentRuns" in queued), (
                "the chart fails: maxConcurrentRuns in both concurrency.runs and queuedRunCoordinator"
            )
        section: dict[str, Any] = {}
        snake = {"defaultLimit": "default_limit", "granularity": "granularity"}
        snake["opGranularityRunBuffer"] = "op_granularity_run_buffer"
        if pools:
            section["pools"] = {snake[key]: value for key, value in pools.items()}
        if runs:
            section["runs"] = {}
            if "maxConcurrentRuns" in runs:
                section["runs"]["max_concurrent_runs"] = runs["maxConcurrentRuns"]
            if runs.get("tagConcurrencyLimits"):
                section["runs"]["tag_concurrency_limits"] = _tag_limits(runs["tagConcurrencyLimits"])
        rendered["concurrency"] = section

    for block, name, keys in (
        ("runMonitoring", "run_monitoring", RUN_MONITORING_RENDERED),
        ("runRetries", "run_retries", RUN_RETRIES_RENDERED),
    ):
        settings = daemon.get(block, {})
        if daemon.get("enabled") and settings.get("enabled"):
            dropped = set(settings) - set(keys)
            assert not dropped, f"dagsterDaemon.{block}: the chart does not render {sorted(dropped)}"
            rendered[name] = {keys[key]: value for key, value in settings.items()}

    for kind in ("sensors", "schedules"):
        settings = daemon.get(kind, {})
        if daemon.get("enabled") and settings.get("useThreads"):
            rendered[kind] = {
                "use_threads": True,
                **({"num_workers": settings["numWorkers"]} if "numWorkers" in settings else {}),
            }

    retention = values.get("retention", {})
    if retention.get("enabled"):
        rendered["retention"] = {
            kind: {"purge_after_days": retention[kind]["purgeAfterDays"]}
            for kind in ("sensor", "schedule")
            if retention.get(kind)
        }
    rendered["telemetry"] = {"enabled": values.get("telemetry", {}).get("enabled", True)}

    additional = values.get("additionalInstanceConfig") or {}
    clashes = set(additional) & set(rendered)
    assert not clashes, f"additionalInstanceConfig repeats sections the chart renders: {sorted(clashes)}"
    rendered.update(additional)
    return rendered
