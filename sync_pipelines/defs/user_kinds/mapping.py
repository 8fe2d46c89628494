"""What one Portail DF lookup means for one ZLV user: pure functions, no I/O.

The lookup filter of Portail DF is not an exact match (a search for ``anna@x.fr`` also returns
``joanna@x.fr``), so the records that count are those whose email equals the user's, trimmed and compared
case-insensitively. The seed took ``results[0]``, which picks the wrong record whenever a longer email sorts
first.

Portail DF answers one record per structure the person belongs to (a DDT agent attached to several local
authorities has several). Records whose flags agree give that kind. Records that disagree give none: ZLV's own
login hook writes the kind of ``results[0]`` at every login, so a sync that picked one of them by a rule of its
own would flip-flop with it; the user's kind is left alone and the user reported (``structures_disagree``).
A record without its flags cannot be used and is reported, never read as ``false``, which is what ZLV's hook
does.
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
STRUCTURES_DISAGREE = "structures_disagree"
INVALID_ANSWER = "invalid_answer"
NO_EMAIL = "no_email"

FLAGS = ("exterieur", "gestionnaire")
# How an unusable answer is named, in the run's report and in its failure (the next run asks again).
UNUSABLE = "unusable in Portail DF's answer"


@dataclass(frozen=True)
class LookupOutcome:
    """Either a ``kind`` to write, or a skip ``category`` with a readable ``reason``."""

    kind: str | None = None
    category: str | None = None
    reason: str = ""
    id_user: Any = None
    # How many records (one per structure) the kind was read from.
    records: int = 0

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


def structure_of(record: Mapping[str, Any]) -> Any:
    """The record's structure id: ``structure`` is an id, or an object ``{id_structure}`` / ``{id}``."""
    structure = record.get("structure")
    if isinstance(structure, Mapping):
        return structure.get("id_structure", structure.get("id"))
    return structure


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
        named = "a record without id_user" if id_user is None else f"record {id_user}"
        return LookupOutcome(
            category=INVALID_ANSWER,
            reason=f"{UNUSABLE}: {named}: {'; '.join(problems)}",
            id_user=id_user,
        )
    return LookupOutcome(
        kind=kind_for(record["exterieur"], record["gestionnaire"]), id_user=id_user, records=1
    )


def select_outcome(email: str, results: Sequence[Any]) -> LookupOutcome:
    """The outcome for ``email`` from the records its lookup returned.

    Only the records with this very email count (records for longer emails that merely contain it do not): none
    is not found; one or several (one per structure) whose flags agree give that kind; several that disagree
    give none (``structures_disagree``, with every record's ``id_user``); a record without usable flags makes
    the answer unusable (``invalid_answer``), whatever the others say.
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
    outcomes = [kind_of_record(record) for record in exact]
    unusable = [outcome for outcome in outcomes if outcome.kind is None]
    if unusable:
        reasons = "; ".join(outcome.reason.removeprefix(f"{UNUSABLE}: ") for outcome in unusable)
        return LookupOutcome(
            category=INVALID_ANSWER, reason=f"{UNUSABLE}: {reasons}", id_user=unusable[0].id_user
        )
    kinds = {outcome.kind for outcome in outcomes}
    if len(kinds) == 1:
        return LookupOutcome(kind=outcomes[0].kind, id_user=outcomes[0].id_user, records=len(outcomes))
    listed = "; ".join(
        f"id_user {record.get('id_user')} (structure {structure_of(record)}): {outcome.kind}"
        for record, outcome in zip(exact, outcomes, strict=True)
    )
    return LookupOutcome(
        category=STRUCTURES_DISAGREE,
        reason=(
            f"{len(exact)} Portail DF records (one per structure) give different kinds: {listed}; the kind is "
            "left as it is (ZLV's login writes the first record's kind)"
        ),
    )
