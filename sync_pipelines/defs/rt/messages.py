"""RT's PUT reply messages, read by their grammar (pure).

``PUT /user/{id}`` answers 200 with an array of messages, one per change RT made or refused. RT 5 words them:

- ``<field> <new> added`` — a single-value field had no value;
- ``<field> <old> changed to <new>`` — it had one;
- ``<field> <old> deleted`` — ``""`` cleared it;
- ``<old> is no longer a value for custom field <field>`` — ``null`` cleared it (or a multi-value removal);
- ``<new> added as a value for <field>`` — a multi-value field took a value;
- ``Could not add a new value to custom field '<field>': <why>`` — refused (``Input must match ...``,
  ``Permission Denied``); older RTs say ``Could not add new custom field value: <why>`` without the field.

Old and new values are quoted as they are, so a message is read by the field names the caller wrote and the
values it asked for, never by searching for words (a value may well contain "failed" or "could not").
A field RT ignores (not applied to users, disabled, no right to see it) gets no message at all: a change is
written only when a message confirms it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

_REFUSED_FIELD = re.compile(
    r"^Could not add a new value to custom field '(?P<field>.*?)': (?P<why>.*)$", re.S
)
_REFUSED = re.compile(r"^(?:Could not|Couldn't|Permission Denied|Invalid|Input must match)", re.I)
_REMOVED = re.compile(r"^(?P<value>.*) is no longer a value for custom field (?P<field>.*)$", re.S)
_ADDED_MULTI = re.compile(r"^(?P<value>.*) added as a value for (?P<field>.*)$", re.S)


@dataclass(frozen=True)
class Message:
    """One reply message: ``kind`` is ``added``, ``changed``, ``deleted``, ``refused`` or ``other``."""

    kind: str
    text: str
    field: str | None = None
    old: str | None = None
    new: str | None = None


def parse_message(text: str, fields: Iterable[str]) -> Message:
    """One message, read against the names of the fields written (longest first: ``Grade`` vs ``Grade level``)."""
    refused = _REFUSED_FIELD.match(text)
    if refused:
        return Message("refused", text, field=refused["field"], new=None)
    for name in sorted(set(fields), key=len, reverse=True):
        removed = _REMOVED.match(text)
        if removed and removed["field"] == name:
            return Message("deleted", text, field=name, old=removed["value"])
        multi = _ADDED_MULTI.match(text)
        if multi and multi["field"] == name:
            return Message("added", text, field=name, new=multi["value"])
        if not text.startswith(name + " "):
            continue
        rest = text[len(name) + 1 :]
        if rest.endswith(" added"):
            return Message("added", text, field=name, new=rest[: -len(" added")])
        if rest.endswith(" deleted"):
            return Message("deleted", text, field=name, old=rest[: -len(" deleted")])
        if " changed to " in rest:
            old, _, new = rest.partition(" changed to ")
            return Message("changed", text, field=name, old=old, new=new)
    if _REFUSED.match(text):
        return Message("refused", text)
    return Message("other", text)


def _confirms(message: Message, name: str, value: str | None) -> bool:
    if message.field != name:
        return False
    if value in (None, ""):
        return message.kind == "deleted"
    if message.kind == "added":
        return message.new == value
    if message.kind == "changed":
        # "<old> changed to <new>": the new value is the message's end, whatever the old one holds.
        return message.text.endswith(f" changed to {value}")
    return False


@dataclass(frozen=True)
class Reply:
    """What a PUT reply says about the fields it was meant to change."""

    confirmed: tuple[str, ...]
    unconfirmed: tuple[str, ...]
    refusals: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # field (or "") -> RT's words
    messages: tuple[str, ...] = ()

    @property
    def written(self) -> bool:
        return not self.unconfirmed

    def reason(self, excerpt: Callable[[str], str]) -> str:
        """Why the unconfirmed fields are not written, in RT's words where RT gave any; each of RT's messages
        goes through ``excerpt`` (``ApiClient.excerpt``: secrets masked, one line, cut short), as any server text
        put into an error does."""
        said = [excerpt(text) for name in (*self.unconfirmed, "") for text in self.refusals.get(name, ())]
        if said:
            return "RT refused: " + "; ".join(dict.fromkeys(said))
        answered = "; ".join(excerpt(text) for text in self.messages) if self.messages else "no message"
        return (
            f"RT did not confirm {', '.join(map(repr, self.unconfirmed))} (it answered: {answered}); "
            "RT ignores a field that is not applied to users, is disabled, or that the token's user may not "
            "modify (ModifyCustomField)"
        )


def read_reply(messages: Iterable[object], changed: Mapping[str, str | None]) -> Reply:
    """``changed`` is ``{field: value asked for}`` for the fields that differed; each needs a confirming message."""
    # RT answers ``null`` for a value of a multi-value field it holds already in another case: it says nothing.
    texts = tuple(str(message) for message in messages if message is not None)
    parsed = [parse_message(text, changed) for text in texts]
    confirmed: list[str] = []
    unconfirmed: list[str] = []
    for name, value in changed.items():
        target = confirmed if any(_confirms(message, name, value) for message in parsed) else unconfirmed
        target.append(name)
    refusals: dict[str, list[str]] = {}
    for message in parsed:
        if message.kind == "refused":
            refusals.setdefault(
                message.field if message.field and message.field in changed else "", []
            ).append(message.text)
    return Reply(
        tuple(confirmed),
        tuple(unconfirmed),
        {name: tuple(texts) for name, texts in refusals.items()},
        texts,
    )
