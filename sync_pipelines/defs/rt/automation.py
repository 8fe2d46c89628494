"""When the RT sync runs besides its nightly schedule (``defs/rt/sync.py``): within minutes of a change in the
students table. The sensor is made for the sync's job and the system's status by the builder (the spec lists it),
so it need not import the spec."""

import hashlib
import json
from collections import defaultdict

import dagster as dg

from sync_pipelines.defs.students.resources import StudentsDatabase
from sync_pipelines.defs.students.validation import parse_active, student_shard
from sync_pipelines.sync.shards import SHARD_KEYS


def shard_digests(fingerprints: dict[str, tuple[str, str]]) -> dict[str, str]:
    """``{shard: digest}`` over ``{student id: (shard, fingerprint)}``: a shard's digest changes when any of its
    students is added, removed, or changes grade or RT user."""
    members: dict[str, list[str]] = defaultdict(list)
    for student_id, (shard, fingerprint) in fingerprints.items():
        members[shard].append(f"{student_id}={fingerprint}")
    return {
        shard: hashlib.sha1(
            "\n".join(sorted(members.get(shard, []))).encode(), usedforsecurity=False
        ).hexdigest()[:16]
        for shard in SHARD_KEYS
    }


def students_changed_sensor(job: str, status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    """The ``students_changed`` sensor, starting ``job`` (``rt_user_sync``)."""

    @dg.sensor(
        name="students_changed",
        job_name=job,
        minimum_interval_seconds=60,
        default_status=status,
        description="Starts rt_user_sync for the shards whose students changed since the last look, so an edit "
        "reaches RT within minutes instead of the next night.",
    )
    def students_changed(
        context: dg.SensorEvaluationContext, students_database: StudentsDatabase
    ) -> dg.SkipReason | list[dg.RunRequest]:
        rows = students_database.read_rows()
        fingerprints = {}
        for row in rows:
            if parse_active(row["active"]) is False:
                continue  # the RT sync leaves inactive students' RT users alone: their edits start nothing
            rt_user_id = row["rt_user_id"]
            digest = hashlib.sha1(
                repr((row["grade"], rt_user_id)).encode(), usedforsecurity=False
            ).hexdigest()[:12]
            # The shard the RT sync computes for the same student (``student_shard``: one function, one key).
            fingerprints[str(row["student_id"])] = (student_shard(rt_user_id, row["student_id"]), digest)
        digests = shard_digests(fingerprints)
        previous = json.loads(context.cursor) if context.cursor else None
        context.update_cursor(json.dumps(digests, sort_keys=True))
        if previous is None:
            return dg.SkipReason(f"first look at {len(rows)} students; changes from now on start a sync")
        changed = [shard for shard in SHARD_KEYS if previous.get(shard) != digests[shard]]
        if not changed:
            return dg.SkipReason("no student changed")
        return [
            dg.RunRequest(
                run_key=f"{shard}:{digests[shard]}",
                partition_key=shard,
                tags={"sync/trigger": "students_changed"},
            )
            for shard in changed
        ]

    return students_changed
