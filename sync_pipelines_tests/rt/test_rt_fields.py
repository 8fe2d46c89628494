"""RT's field types, as the sync takes and compares values (``defs/rt/fields.py``): the rules the contract tests
measured on a real RT 5 (``rt_real/test_rt_contract.py``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_pipelines.defs.rt.fields import NotListed, RtField, as_rt_takes, held_as_wanted
from sync_pipelines.defs.rt.messages import read_reply
from sync_pipelines_tests.rt.test_rt_messages import EXCERPT

pytestmark = pytest.mark.unit

GRADES = ("K", *(str(grade) for grade in range(1, 12)))  # no 12
LEVEL = RtField("7", "Level", "Select", 1, GRADES)
FREE = RtField("3", "Student ID")
FIELDS = {"Level": LEVEL, "Student ID": FREE}


def test_a_select_takes_its_lists_spelling_ignoring_case_and_nothing_else() -> None:
    assert LEVEL.spelled("k") == "K"
    assert LEVEL.spelled("K") == "K"
    assert LEVEL.spelled("12") is None
    assert LEVEL.spelled(" 1 ") is None  # RT trims nothing
    assert LEVEL.spelled("") == ""  # clearing is always taken
    lower = RtField("8", "Lower", "Select", 1, ("k", "1"))
    assert lower.spelled("K") == "k"


def test_other_types_and_unknown_lists_take_any_value_as_it_is() -> None:
    assert FREE.spelled("k") == "k"
    assert RtField("9", "Combo", "Combobox", 1, None).spelled("anything") == "anything"
    assert RtField("9", "External", "Select", 1, None).spelled("anything") == "anything"


def test_a_select_counts_a_held_value_in_another_case_as_the_wanted_one() -> None:
    assert LEVEL.counts_as("k", "K")
    assert not LEVEL.counts_as("1", "K")
    assert not LEVEL.counts_as(["k", "1"], "K")  # several values held: a write is needed
    assert LEVEL.counts_as(None, "") and LEVEL.counts_as([], None)
    assert not FREE.counts_as("s1", "S1")
    assert FREE.counts_as("S1", "S1")
    assert RtField("9", "Combo", "Combobox").counts_as("k", "k") and not RtField(
        "9", "Combo", "Combobox"
    ).counts_as("k", "K")


@given(
    listed=st.lists(st.text(max_size=6), min_size=0, max_size=8, unique_by=str.lower),
    value=st.text(min_size=1, max_size=6),
)
def test_what_a_select_takes_it_counts_as_held(listed: list[str], value: str) -> None:
    field = RtField("1", "F", "Select", 1, tuple(listed))
    spelled = field.spelled(value)
    assert (spelled is None) == (value.lower() not in {entry.lower() for entry in listed})
    if spelled is not None:
        assert spelled in listed and field.counts_as(spelled, value) and field.counts_as(value, spelled)


def test_values_a_select_lacks_are_left_out_and_reported_in_one_line_per_field() -> None:
    desired = {
        "31": {"Level": "k", "Student ID": "S1"},
        "33": {"Level": "12", "Student ID": "S2"},
        "35": {"Level": "12", "Student ID": "S3"},
        "37": {"Level": "13", "Student ID": "S4"},
    }
    taken, not_listed = as_rt_takes(desired, FIELDS)
    assert taken == {
        "31": {"Level": "K", "Student ID": "S1"},
        "33": {"Student ID": "S2"},
        "35": {"Student ID": "S3"},
        "37": {"Student ID": "S4"},
    }
    assert not_listed.counts() == {"Level": {"12": 2, "13": 1}}
    [line] = not_listed.lines({"Level": "RT_GRADE_FIELD"})
    assert line.startswith("RT's custom field 'Level' is a Select whose values do not include '12', '13': ")
    assert "not sent for 3 user(s) (RT users 33, 35, 37)" in line and "RT_GRADE_FIELD" in line
    assert "\n" not in line
    assert not NotListed() and NotListed().lines({}) == []


def test_many_values_and_users_are_cut_short_in_the_line() -> None:
    not_listed = NotListed()
    for number in range(30):
        not_listed.add("Level", f"v{number}", str(100 + number))
    [line] = not_listed.lines({})
    assert "and 20 more" in line and "RT users 100, 101, 102, 103, 104, ..." in line
    assert "30 user(s)" in line


def test_held_values_rt_counts_as_wanted_read_as_wanted() -> None:
    current = {"31": {"Level": "k", "Student ID": "s1"}, "33": None, "35": {"Level": "2", "Student ID": "S3"}}
    desired = {"31": {"Level": "K", "Student ID": "S1"}, "35": {"Level": "3", "Student ID": "S3"}}
    assert held_as_wanted(current, desired, FIELDS) == {
        "31": {"Level": "K", "Student ID": "s1"},  # Student ID is free-form: s1 is not S1
        "33": None,
        "35": {"Level": "2", "Student ID": "S3"},
    }
    # Read without a desired record (an undo's, a reviewed plan's): what RT holds, as it is.
    assert held_as_wanted(current, {}, FIELDS) == current


def test_a_reply_of_null_says_nothing_and_an_invalid_value_is_rts_refusal() -> None:
    reply = read_reply(
        [None, "Student ID S1 added", "Invalid value for custom field"], {"Level": "12", "Student ID": "S1"}
    )
    assert (reply.confirmed, reply.unconfirmed) == (("Student ID",), ("Level",))
    assert reply.reason(EXCERPT) == "RT refused: Invalid value for custom field"
    assert "None" not in reply.messages
