"""What a run's row errors look like from outside: its ``records_synced`` check, as Dagster recorded it."""

from __future__ import annotations

import dagster as dg

from sync_pipelines.defs.shared.run_report import RECORDS_CHECK


def records_check(result: dg.ExecuteInProcessResult, asset: str) -> dg.AssetCheckEvaluation:
    """The run's evaluation of ``asset``'s ``records_synced`` check (one per run)."""
    found = [
        evaluation
        for evaluation in result.get_asset_check_evaluations()
        if evaluation.asset_key == dg.AssetKey(asset) and evaluation.check_name == RECORDS_CHECK
    ]
    assert len(found) == 1, f"{len(found)} evaluation(s) of {asset}'s {RECORDS_CHECK}"
    return found[0]


def errors_table(result: dg.ExecuteInProcessResult, asset: str) -> str:
    """The check's table of row errors (record, error, reason); empty when every record went through."""
    entry = records_check(result, asset).metadata.get("errors")
    return str(entry.value) if entry is not None else ""


def summary_line(result: dg.ExecuteInProcessResult, asset: str) -> str:
    """The run's summary line (``<target>: N created, M updated, ... with K record error(s) (...)``), the
    description of the run's last observation of ``asset``."""
    observations = [
        event.event_specific_data.asset_observation
        for event in result.all_events
        if event.event_type_value == "ASSET_OBSERVATION"
        and event.event_specific_data.asset_observation.asset_key == dg.AssetKey(asset)
    ]
    assert observations, f"the run observed no {asset}"
    return str(observations[-1].description)
