"""Reading one answer's body without letting it crash or swamp a run: bounded size, bounded nesting.

An API answer is untrusted input. Three things about it are bounded here, for every system:

* its size, as it arrives: ``BodyReader`` counts the bytes that reach memory *after* decompression, in small
  steps (``zlib``'s ``max_length``), and stops at the limit. A 300 KB gzip bomb that would expand to a gigabyte
  therefore costs at most the limit, never the gigabyte. The transport does not decompress (``httpx-aiohttp``
  asks aiohttp for the raw body), so this is the only place a body is decompressed;
* its nesting depth: ``decode_json`` counts brackets outside strings before parsing, so ``[[[[...`` ten thousand
  deep is refused by name instead of raising ``RecursionError`` in the parser or in whatever walks the result;
* anything else the parser raises (``ValueError`` for an integer of thousands of digits, invalid UTF-8, ...)
  becomes ``AnswerError``, which the HTTP layer turns into that one request's ``MalformedResponseError``.
"""

from __future__ import annotations

import json
import re
import zlib
from itertools import accumulate

from sync_pipelines.core.json_value import JsonValue

DEFAULT_MAX_ANSWER_BYTES = 16 * 1024 * 1024
MAX_JSON_DEPTH = 64
# Decompressed output per step: what one compressed chunk may expand to before the count is checked again.
DECOMPRESS_STEP = 64 * 1024
SUPPORTED_ENCODINGS = ("identity", "gzip", "x-gzip", "deflate")
ACCEPT_ENCODING = "gzip, deflate"

# A JSON string, escapes included (unrolled, so it runs in linear time); an unterminated one is left alone.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class AnswerError(ValueError):
    """One answer that cannot be used; the message says why, never quoting the body."""


class AnswerTooLargeError(AnswerError):
    """An answer longer than the limit, counted after decompression."""


def json_depth(content: bytes) -> int:
    """The deepest nesting of arrays and objects in ``content`` (brackets inside strings do not count)."""
    brackets = _JSON_STRING.sub(b"", content).translate(None, delete=_NOT_BRACKETS)
    if not brackets:
        return 0
    return max(0, max(accumulate(map(_DEPTH_STEP.__getitem__, brackets))))


def decode_json(content: bytes, max_depth: int = MAX_JSON_DEPTH) -> JsonValue:
    """``content`` parsed as JSON; ``AnswerError`` for anything that is not usable JSON, whatever the parser
    raised (``RecursionError``, ``ValueError`` from the int conversion limit, ``UnicodeDecodeError``, ...)."""
    if content.count(b"[") + content.count(b"{") > max_depth:
        depth = json_depth(content)
        if depth > max_depth:
            raise AnswerError(f"JSON nested {depth} levels deep (more than {max_depth})")
    try:
        value: JsonValue = json.loads(content)
    except RecursionError:
        raise AnswerError(f"JSON nested too deep (more than {max_depth} levels)") from None
    except UnicodeDecodeError:
        raise AnswerError("not valid UTF-8") from None
    except json.JSONDecodeError as error:
        raise AnswerError(f"not JSON ({error.msg} at character {error.pos})") from None
    except ValueError as error:
        # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        raise AnswerError(f"not usable JSON ({str(error).split(';')[0][:120]})") from None
    except Exception as error:  # noqa: BLE001 - whatever the parser raises, it is this answer's problem only
        raise AnswerError(f"not usable JSON ({type(error).__name__})") from None
    return value


class BodyReader:
    """Collects one answer's body from its raw (possibly compressed) chunks, never holding more than
    ``max_bytes`` of decoded body: ``feed`` each chunk, then ``finish`` for the body."""

    def __init__(self, content_encoding: str | None, max_bytes: int) -> None:
        encodings = [part.strip().lower() for part in (content_encoding or "").split(",") if part.strip()]
        encodings = [part for part in encodings if part != "identity"]
        if len(encodings) > 1 or (encodings and encodings[0] not in SUPPORTED_ENCODINGS):
            raise AnswerError(f"content-encoding {(content_encoding or '')[:40]!r} was not asked for")
        self.encoding = encodings[0] if encodings else "identity"
        self.max_bytes = max_bytes
        self.body = bytearray()
        self.raw_bytes = 0
        self._decompressor: zlib._Decompress | None = None
        self._raw_deflate_tried = False
        if self.encoding in ("gzip", "x-gzip"):
            self._decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif self.encoding == "deflate":
            self._decompressor = zlib.decompressobj()

    def feed(self, chunk: bytes) -> None:
        self.raw_bytes += len(chunk)
        if self._decompressor is None:
            self._append(chunk)
            return
        data = chunk
        while data:
            try:
                out = self._decompressor.decompress(data, DECOMPRESS_STEP)
            except zlib.error as error:
                if self.encoding == "deflate" and not self._raw_deflate_tried and not self.body:
                    # Servers send raw deflate as often as zlib-wrapped deflate (as httpx's decoder allows).
                    self._raw_deflate_tried = True
                    self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise AnswerError(f"{self.encoding} body cannot be decompressed ({error})") from None
            self._append(out)
            data = self._decompressor.unconsumed_tail
            if self._decompressor.eof:
                break

    def _append(self, data: bytes) -> None:
        if len(self.body) + len(data) > self.max_bytes:
            raise AnswerTooLargeError(f"answer longer than {describe_bytes(self.max_bytes)}")
        self.body += data

    def finish(self) -> bytes:
        if self._decompressor is not None and not self._decompressor.eof and self.raw_bytes:
            self._append(self._decompressor.flush(DECOMPRESS_STEP))
        return bytes(self.body)


def describe_bytes(count: int) -> str:
    """``16777216`` -> ``16 MiB``; ``1500`` -> ``1500 bytes``."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size and count % size == 0:
            return f"{count // size} {unit}"
    if count >= 1 << 20:
        return f"{count / (1 << 20):.1f} MiB"
    return f"{count} bytes"
