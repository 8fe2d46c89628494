"""RT's PUT reply messages, read by their grammar (``defs/rt/messages.py``)."""

from __future__ import annotations

import pytest

from sync_pipelines.core.http import ApiClient, ApiLimits
from sync_pipelines.defs.rt.messages import parse_message, read_reply

pytestmark = pytest.mark.unit

FIELDS = ("Grade", "Student ID")
TOKEN = "rt-token-5c1e88a0-secret"
# What the RT client puts RT's words through: secrets masked, one line, cut short.
EXCERPT = ApiClient("RT", "http://127.0.0.1:1/REST/2.0/", ApiLimits(), "RT_TOKEN", secrets=[TOKEN]).excerpt


@pytest.mark.parametrize(
    ("text", "kind", "field", "old", "new"),
    [
        ("Grade K changed to 1", "changed", "Grade", "K", "1"),
        ("Student ID S1 added", "added", "Student ID", None, "S1"),
        ("Student ID S1 deleted", "deleted", "Student ID", "S1", None),
        ("8 is no longer a value for custom field Grade", "deleted", "Grade", "8", None),
        ("Choir added as a value for Grade", "added", "Grade", None, "Choir"),
        ("Grade could not failed changed to 9", "changed", "Grade", "could not failed", "9"),
        ("Grade Input must match added", "added", "Grade", None, "Input must match"),
        (
            "Could not add a new value to custom field 'Grade': Input must match ^\\d{4}$",
            "refused",
            "Grade",
            None,
            None,
        ),
        (
            "Could not add new custom field value: Input must match [Grade pattern]",
            "refused",
            None,
            None,
            None,
        ),
        (
            "Could not add a new value to custom field 'Grade': Permission Denied",
            "refused",
            "Grade",
            None,
            None,
        ),
        ("EmailAddress changed from 'a' to 'b'", "other", None, None, None),
    ],
)
def test_parse_message_reads_the_grammar(text, kind, field, old, new) -> None:
    message = parse_message(text, FIELDS)
    assert (message.kind, message.field, message.old, message.new) == (kind, field, old, new)


def test_longest_field_name_wins() -> None:
    message = parse_message("Grade level 7 changed to 8", ("Grade", "Grade level"))
    assert (message.field, message.old, message.new) == ("Grade level", "7", "8")


def test_a_reply_confirming_every_change_is_written() -> None:
    reply = read_reply(["Student ID S1 added", "Grade 7 changed to 8"], {"Grade": "8", "Student ID": "S1"})
    assert reply.written and set(reply.confirmed) == {"Grade", "Student ID"}


def test_old_values_with_refusal_words_do_not_make_a_refusal() -> None:
    reply = read_reply(["Grade failed: could not changed to 9"], {"Grade": "9"})
    assert reply.written


def test_an_empty_reply_confirms_nothing() -> None:
    reply = read_reply([], {"Grade": "8"})
    assert not reply.written and reply.unconfirmed == ("Grade",)
    assert "did not confirm 'Grade'" in reply.reason(EXCERPT) and "not applied to users" in reply.reason(
        EXCERPT
    )


def test_a_refusal_is_reported_in_rts_words() -> None:
    refusal = "Could not add a new value to custom field 'Grade': Input must match [Grade pattern]"
    reply = read_reply([refusal, "Student ID S1 added"], {"Grade": "13", "Student ID": "S1"})
    assert reply.unconfirmed == ("Grade",) and reply.confirmed == ("Student ID",)
    assert reply.reason(EXCERPT) == f"RT refused: {refusal}"


def test_a_change_to_another_value_does_not_confirm() -> None:
    assert not read_reply(["Grade 7 changed to 9"], {"Grade": "8"}).written
    assert not read_reply(["Grade 7 changed to 18"], {"Grade": "8"}).written


def test_clearing_is_confirmed_by_either_deletion_message() -> None:
    assert read_reply(["Grade 7 deleted"], {"Grade": ""}).written
    assert read_reply(["7 is no longer a value for custom field Grade"], {"Grade": None}).written


def test_rts_words_reach_the_reason_only_through_excerpt() -> None:
    """RT's messages go into a record's failure (and so the run's error): a secret they quote is masked, each is
    cut short and kept on one line."""
    refusal = f"Could not add a new value to custom field 'Grade': Input must match {TOKEN}\n" + "x" * 5000
    reply = read_reply([refusal, f"Note {TOKEN}\n" + "y" * 5000], {"Grade": "13"})
    reason = reply.reason(EXCERPT)
    assert reason.startswith("RT refused: Could not add a new value to custom field 'Grade'")
    assert TOKEN not in reason and "***" in reason
    assert "\n" not in reason and len(reason) < 300
    silent = read_reply([f"Note {TOKEN}\n" + "y" * 5000], {"Grade": "13"}).reason(EXCERPT)
    assert TOKEN not in silent and "\n" not in silent and len(silent) < 600
