"""Flags -> kind, and which lookup result counts: pure logic, checked against the sandbox's own rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devkit.sandbox import portaildf
from sync_pipelines.defs.user_kinds.mapping import (
    INVALID_ANSWER,
    KINDS,
    NOT_FOUND,
    STRUCTURES_DISAGREE,
    kind_for,
    kind_of_record,
    normalise_email,
    select_outcome,
)

pytestmark = pytest.mark.unit


def record(email: str, exterieur: object = False, gestionnaire: object = True, id_user: int = 1) -> dict:
    return {"id_user": id_user, "email": email, "exterieur": exterieur, "gestionnaire": gestionnaire}


@pytest.mark.parametrize(
    ("exterieur", "gestionnaire", "kind"),
    [
        (True, False, "prestataire"),
        (False, True, "gestionnaire"),
        (True, True, "prestataire, gestionnaire"),
        (False, False, "aucun"),
    ],
)
def test_the_seeds_mapping_table(exterieur: bool, gestionnaire: bool, kind: str) -> None:
    assert kind_for(exterieur, gestionnaire) == kind
    outcome = select_outcome("a@b.fr", [record("a@b.fr", exterieur, gestionnaire)])
    assert outcome.found and outcome.kind == kind


def test_kinds_agree_with_the_sandbox() -> None:
    assert KINDS == portaildf.KINDS


def test_the_exact_email_wins_over_a_longer_one_listed_first() -> None:
    results = [record("joanna.x@b.fr", True, False, 5), record("anna.x@b.fr", False, True, 9)]
    outcome = select_outcome("  Anna.X@B.fr ", results)
    assert outcome.kind == "gestionnaire" and outcome.id_user == 9


def test_only_a_longer_email_is_not_found() -> None:
    outcome = select_outcome("anna@b.fr", [record("joanna@b.fr")])
    assert outcome.category == NOT_FOUND and not outcome.found
    assert "1 record(s) for other emails" in outcome.reason
    assert select_outcome("anna@b.fr", []).category == NOT_FOUND


def structure_record(id_user: int, structure: object, exterieur: object, gestionnaire: object) -> dict:
    """One record per structure, as Portail DF answers for a person in several: extra keys, ``structure`` as an
    id or an object, dates with an offset."""
    return {
        "id_user": id_user,
        "email": "agent.ddt@Ddt-Nord.gouv.fr",
        "structure": structure,
        "exterieur": exterieur,
        "gestionnaire": gestionnaire,
        "groupe": 173,
        "cgu_valide": "2024-03-01T10:00:00+01:00",
        "date_rattachement": "2023-11-20T09:30:00+01:00",
        "date_expiration": None,
        "str_mandataire": None,
    }


def test_records_of_several_structures_that_agree_give_their_kind() -> None:
    results = [
        structure_record(11, 723, False, True),
        structure_record(12, {"id_structure": 1621}, False, True),
        structure_record(13, {"id": 88}, False, True),
    ]
    outcome = select_outcome(" agent.ddt@ddt-nord.gouv.fr", results)
    assert outcome.kind == "gestionnaire" and outcome.records == 3


def test_records_of_several_structures_that_disagree_leave_the_kind_alone() -> None:
    results = [
        structure_record(11, 723, False, True),
        structure_record(12, {"id_structure": 1621}, True, False),
    ]
    outcome = select_outcome("agent.ddt@ddt-nord.gouv.fr", results)
    assert outcome.category == STRUCTURES_DISAGREE and outcome.kind is None
    assert "id_user 11 (structure 723): gestionnaire" in outcome.reason
    assert "id_user 12 (structure 1621): prestataire" in outcome.reason


def test_a_record_without_flags_among_agreeing_ones_is_unusable_not_guessed() -> None:
    """ZLV's login hook reads a missing flag as false; the sync does not guess, whatever the other records say."""
    unflagged = structure_record(12, 1621, False, True)
    del unflagged["exterieur"], unflagged["gestionnaire"]
    outcome = select_outcome(
        "agent.ddt@ddt-nord.gouv.fr", [structure_record(11, 723, False, True), unflagged]
    )
    assert outcome.category == INVALID_ANSWER and outcome.kind is None
    assert outcome.reason == (
        "unusable in Portail DF's answer: record 12: 'exterieur' is missing; 'gestionnaire' is missing"
    )


def test_a_record_for_another_address_never_counts() -> None:
    longer = {**structure_record(10, 5, True, True), "email": "old.agent.ddt@ddt-nord.gouv.fr"}
    outcome = select_outcome("agent.ddt@ddt-nord.gouv.fr", [longer, structure_record(11, 723, False, False)])
    assert outcome.kind == "aucun" and outcome.records == 1


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"exterieur": None}, "'exterieur' is None (NoneType), not a boolean"),
        ({"gestionnaire": "true"}, "'gestionnaire' is 'true' (str), not a boolean"),
        ({"gestionnaire": 1}, "'gestionnaire' is 1 (int), not a boolean"),
    ],
)
def test_non_boolean_flags_are_reported_not_guessed(fields: dict, problem: str) -> None:
    outcome = kind_of_record({**record("a@b.fr"), **fields})
    assert outcome.category == INVALID_ANSWER and problem in outcome.reason and outcome.kind is None


def test_missing_flags_are_reported() -> None:
    outcome = kind_of_record({"id_user": 7, "email": "a@b.fr"})
    assert outcome.reason == (
        "unusable in Portail DF's answer: record 7: 'exterieur' is missing; 'gestionnaire' is missing"
    )


def test_records_without_an_email_never_match() -> None:
    assert (
        select_outcome("a@b.fr", [{"id_user": 1, "exterieur": True, "gestionnaire": True}]).category
        == NOT_FOUND
    )


@given(
    flags=st.lists(
        st.tuples(st.sampled_from([True, False, None]), st.sampled_from([True, False, "true"])),
        min_size=0,
        max_size=4,
    ),
    others=st.integers(min_value=0, max_value=3),
)
def test_selection_follows_the_sandboxs_documented_rule(
    flags: list[tuple[object, object]], others: int
) -> None:
    email = "Zoë.Martin+test@Exemple.fr "
    exact = [record(normalise_email(email), e, g, id_user=i) for i, (e, g) in enumerate(flags)]
    longer = [record("jo" + normalise_email(email), id_user=100 + i) for i in range(others)]
    user = portaildf.SampleZlvUser(id="u", email=email, deleted_at=None, kind=None)
    expected = portaildf.expected_outcomes([user], exact + longer)["u"]
    outcome = select_outcome(email, longer + exact)
    category = "invalid" if outcome.category == INVALID_ANSWER else outcome.category
    assert (outcome.kind or category) == expected
