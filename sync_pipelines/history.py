"""``python -m sync_pipelines.history <system> <record>``: why does the target hold this value for this record?

``<system>`` as named in ``SYNC_SYSTEMS`` (``rt``, ``bakalari``, ``user_kinds``); ``<record>`` as support staff know
it: an RT user id or a student id; a ZLV user id or e-mail; a Bakaláři id or an EduRPG user id. Prints every run
that planned, wrote, skipped, refused, conflicted on or undid the record (oldest first), what both systems hold
now and why they differ, and the command that undoes its last change: the ``record_history`` job's answer, with
the same environment (the sync's variables and ``SYNC_STATE_DATABASE_URL``). Exits 1 with one line when it
cannot answer.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sqlalchemy.exc import SQLAlchemyError

from sync_pipelines.core.errors import SyncError
from sync_pipelines.core.redaction import describe_error, redact
from sync_pipelines.defs.operations.record_history import ask_about
from sync_pipelines.defs.shared.state_resource import SyncStateResource
from sync_pipelines.defs.syncs import SYNCS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sync_pipelines.history",
        description="Why does the target hold this value for this record? Every run that touched it, both "
        "systems now, and the command that undoes its last change.",
    )
    asked = [spec for spec in SYNCS if spec.record_history is not None]
    parser.add_argument(
        "system", help=f"{', '.join(spec.system for spec in asked)} (as named in SYNC_SYSTEMS)"
    )
    parser.add_argument(
        "record",
        help="; ".join(
            f"{spec.system}: {spec.record_history.names}" for spec in asked if spec.record_history
        ),
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        history = ask_about(
            SYNCS, args.system, args.record, logging.getLogger("sync_pipelines.history"), SyncStateResource()
        )
    except SyncError as error:
        print(redact(str(error).strip().splitlines()[0]), file=sys.stderr)
        return 1
    except SQLAlchemyError as error:
        print(f"database error: {describe_error(error)}", file=sys.stderr)
        return 1
    print(history.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
