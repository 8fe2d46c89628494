"""A server's answer as a caller and an operator read it: its JSON, or that one request's error; and any of its
text fit for an error message.

* ``parse_json`` turns anything the parser raises (a 10,000-digit number, JSON nested 100,000 deep, invalid
  UTF-8) into that request's ``MalformedResponseError``: no answer may end the run by its shape.
* Whatever of a server's body goes into an error message goes through ``excerpt``: secrets and e-mail addresses
  masked, on one line, cut short. ``error_message`` is an error answer as ``HTTP <status>: <message>``.
"""

from __future__ import annotations

import httpx

from sync_pipelines.core.answers import AnswerError, decode_json
from sync_pipelines.core.errors import MalformedResponseError
from sync_pipelines.core.json_value import JsonValue
from sync_pipelines.core.redaction import Redactor, mask_personal

EXCERPT_CHARACTERS = 200
# Where an error answer's JSON says what went wrong, in the shapes APIs use (RT, Django REST framework, OAuth,
# ASP.NET): the first that holds text is the message shown.
MESSAGE_FIELDS = ("message", "detail", "error_description", "Message", "error")


class AnswerText:
    """One system's answers read for its callers, through the client's redactor."""

    def __init__(self, system: str, redact: Redactor, max_json_depth: int) -> None:
        self.system = system
        self.redact = redact
        self.max_json_depth = max_json_depth

    def parse_json(self, response: httpx.Response, method: str, path: str) -> JsonValue:
        """The body as JSON; anything that is not usable JSON (whatever the parser raised: a number of
        thousands of digits, nesting deeper than ``max_json_depth``, invalid UTF-8) is a
        ``MalformedResponseError`` of this one request."""
        try:
            return decode_json(response.content, self.max_json_depth)
        except Exception as error:  # noqa: BLE001 - no answer may end the run by its shape
            kind = self.excerpt(
                response.headers.get("content-type", "unknown content type").split(";")[0], 60
            )
            problem = str(error) if isinstance(error, AnswerError) else type(error).__name__
            raise MalformedResponseError(
                self.system,
                method,
                self.redact(path),
                f"HTTP {response.status_code} answered with {kind}, {problem}"
                if problem.startswith("not ")
                else f"HTTP {response.status_code} answered with {kind}, not usable JSON: {problem}",
                status=response.status_code,
            ) from None

    def excerpt(self, body: object, characters: int = EXCERPT_CHARACTERS) -> str:
        """A server's body (or any text from it) fit for an error message: secrets and e-mail addresses masked
        *before* it is cut (a cut token could no longer be recognised), on one line, at most ``characters``
        long."""
        text = body if isinstance(body, str) else _shown(body)
        text = " ".join(mask_personal(self.redact(text[: characters * 4 + 256])).split())
        return text if len(text) <= characters else text[: characters - 3] + "..."

    def error_message(self, response: httpx.Response) -> str:
        """An error answer as an operator reads it: ``HTTP <status>: <message>``, the message being what the
        answer's JSON names (``MESSAGE_FIELDS``) or else its text, through ``excerpt`` (masked, one line, short).
        The body was masked as it was read (``core.transport.mask_error_answer``)."""
        body: JsonValue
        try:
            body = decode_json(response.content, self.max_json_depth)
        except AnswerError:
            body = response.text
        if isinstance(body, dict):
            named = (body.get(name) for name in MESSAGE_FIELDS)
            body = next((text for text in named if isinstance(text, str) and text.strip()), body)
        message = self.excerpt(body) if body not in ("", None) else ""
        return f"HTTP {response.status_code}: {message}" if message else f"HTTP {response.status_code}"


def _shown(body: object) -> str:
    """``str(body)``, which for JSON nested to the depth limit cannot fail, but for anything else might."""
    try:
        return str(body)
    except Exception:  # noqa: BLE001
        return f"<{type(body).__name__}>"
