"""What one Portail DF lookup means for one ZLV user: pure functions, no I/O.

The lookup filter of Portail DF is not an exact match (a search for ``anna@x.fr`` also returns
``joanna@x.fr``), so the record that counts is the one whose email equals the user's, trimmed and compared
case-insensitively. The seed took ``results[0]``, which picks the wrong record whenever a longer email sorts
first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KIND_PRESTATAIRE = "prestataire"
KIND_GESTIONNAIRE = "gestionnaire"
KIND_BOTH = "prestataire, gestionnaire"
KIND_NONE = "aucun"
KINDS = (KIND_PRESTATAIRE, KIND_GESTIONNAIRE, KIND_BOTH, KIND_NONE)

# Metadata names of the kind distribution (the seed's "Kind distribution" block).
KIND_METADATA_NAMES = {
    KIND_PRESTATAIRE: "kind_prestataire",
    KIND_GESTIONNAIRE: "kind_gestionnaire",
    KIND_BOTH: "kind_both",
    KIND_NONE: "kind_aucun",
}

# Outcomes of a lookup that leave ``users.kind`` as it is (plan skip categories).
NOT_FOUND = "not_found"
AMBIGUOUS = "ambiguous"
INVALID_ANSWER = "invalid_answer"
NO_EMAIL = "no_email"

FLAGS = ("exterieur", "gestionnaire")


@dataclass(frozen=True)
class LookupOutcome:
    """Either a ``kind`` to write, or a skip ``category`` with a readable ``reason``."""

    kind: str | None = None
    category: str | None = None
    reason: str = ""
    id_user: Any = None

    @property
    def found(self) -> bool:
        return self.kind is not None


def normalise_email(email: str) -> str:
    """How Portail DF stores an email, and how a ZLV address is compared with it."""
    return email.strip().lower()


def kind_for(exterieur: bool, gestionnaire: bool) -> str:
    """The seed's mapping table."""
    if exterieur and gestionnaire:
        return KIND_BOTH
    if exterieur:
        return KIND_PRESTATAIRE
    if gestionnaire:
        return KIND_GESTIONNAIRE
    return KIND_NONE


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def kind_of_record(record: Mapping[str, Any]) -> LookupOutcome:
    """The kind one record maps to; a missing or non-boolean flag is reported, never guessed."""
    problems = []
    for flag in FLAGS:
        if flag not in record:
            problems.append(f"'{flag}' is missing")
        elif not isinstance(record[flag], bool):
            problems.append(f"'{flag}' is {_describe(record[flag])}, not a boolean")
    id_user = record.get("id_user")
    if problems:
        # Named by its id_user when it has one (the ZLV user is named by the row's key already).
        named = "Portail DF's record (without id_user)" if id_user is None else f"Portail DF record {id_user}"
        return LookupOutcome(
            category=INVALID_ANSWER,
            reason=f"{named}: {'; '.join(problems)}",
            id_user=id_user,
        )
    return LookupOutcome(kind=kind_for(record["exterieur"], record["gestionnaire"]), id_user=id_user)


def select_outcome(email: str, results: Sequence[Any]) -> LookupOutcome:
    """The outcome for ``email`` from the records its lookup returned.

    Exactly one record with this very email: its kind. None: not found (records for longer emails that merely
    contain this one do not count). Several: ambiguous, whatever their flags say.
    """
    wanted = normalise_email(email)
    exact = [
        record
        for record in results
        if isinstance(record, Mapping)
        and isinstance(record.get("email"), str)
        and normalise_email(record["email"]) == wanted
    ]
    if not exact:
        others = len(results)
        detail = f" ({others} record(s) for other emails containing it)" if others else ""
        return LookupOutcome(category=NOT_FOUND, reason=f"no Portail DF account has this email{detail}")
    if len(exact) > 1:
        ids = ", ".join(str(record.get("id_user")) for record in exact)
        return LookupOutcome(
            category=AMBIGUOUS, reason=f"{len(exact)} Portail DF accounts have this email (id_user {ids})"
        )
    return kind_of_record(exact[0])
