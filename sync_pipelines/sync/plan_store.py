"""Plans saved for review: a dry run's plan (``apply_plan_id``) and an undo's preview, kept in ``sync_plans``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipelines.sync.plan import (
    Action,
    FieldChange,
    PlannedRecord,
)
from sync_pipelines.sync.state_schema import (
    refused_as_one_line,
    saved_plans,
    utc_now,
)


@dataclass(frozen=True)
class SavedPlan:
    plan_id: str
    target: str
    undo_of: str | None
    created_at: datetime
    records: list[PlannedRecord]


class PlanStore:
    """Saves and loads reviewed plans."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @refused_as_one_line
    def save(
        self,
        plan_id: str,
        target: str,
        records: list[PlannedRecord],
        counts: Mapping[str, int],
        undo_of: str | None = None,
    ) -> None:
        """Keep a dry run's plan (the records it would write) for ``apply_plan_id``; replaces a plan of that id."""
        document = [
            [r.key, r.action.value, dict(r.desired), [[c.field, c.old, c.new] for c in r.changes]]
            for r in records
        ]
        with self.engine.begin() as connection:
            connection.execute(sa.delete(saved_plans).where(saved_plans.c.plan_id == plan_id))
            connection.execute(
                sa.insert(saved_plans).values(
                    plan_id=plan_id,
                    target=target,
                    undo_of=undo_of,
                    records=json.dumps(document, ensure_ascii=False, default=str),
                    counts=json.dumps(dict(counts)),
                    created_at=utc_now(),
                )
            )

    def load(self, plan_id: str) -> SavedPlan | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(saved_plans).where(saved_plans.c.plan_id == plan_id)).first()
        if row is None:
            return None
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=timezone.utc)
        records = [
            PlannedRecord(key, Action(action), desired, tuple(FieldChange(*change) for change in changes))
            for key, action, desired, changes in json.loads(row.records)
        ]
        return SavedPlan(row.plan_id, row.target, row.undo_of, created, records)
