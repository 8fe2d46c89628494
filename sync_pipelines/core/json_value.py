"""A JSON document's values as one type, so that what an answer holds is checked where it is read.

``json.loads`` is typed to return ``Any``, which lets a caller index an answer that is a list as if it were an
object without mypy seeing it. ``JsonValue`` is what it really returns: a reader narrows it (``isinstance(body,
dict)``) before it takes anything out, which is what an untrusted answer needs anyway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

JsonValue: TypeAlias = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]
JsonObject: TypeAlias = dict[str, JsonValue]
# What a request may send as JSON: the same values in any mapping or sequence, read only (so that a
# ``dict[str, str]`` is one, which a ``dict[str, JsonValue]`` parameter would refuse).
JsonInput: TypeAlias = str | int | float | bool | None | Sequence["JsonInput"] | Mapping[str, "JsonInput"]
