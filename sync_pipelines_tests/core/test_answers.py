"""Bounded answers, without a server: JSON that cannot crash the parser, bodies that cannot swamp memory,
``Retry-After`` values that are not numbers, and the settings behind the limits."""

from __future__ import annotations

import gzip
import zlib

import pytest

from sync_pipelines.core.answers import (
    MAX_JSON_DEPTH,
    AnswerError,
    AnswerTooLargeError,
    BodyReader,
    decode_json,
    json_depth,
)
from sync_pipelines.core.errors import ConfigurationError
from sync_pipelines.core.http import DEFAULT_DEADLINE_SECONDS, ApiLimits
from sync_pipelines.core.retry import parse_retry_after
from sync_pipelines.core.settings import api_limits

pytestmark = pytest.mark.unit


# -- defect 2: any answer is at worst that answer's failure ----------------------------------------------------
def test_json_nested_deeper_than_the_limit_is_an_answer_error_not_a_recursion_error() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(AnswerError, match="nested 100000 levels deep"):
        decode_json(deep)
    just_over = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(AnswerError, match="nested"):
        decode_json(just_over)
    at_limit = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert json_depth(at_limit) == MAX_JSON_DEPTH
    decode_json(at_limit)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    body = b'{"name": "' + b"[{" * 500 + b'\\"[[", "items": [[1], {"a": [2]}]}'
    assert json_depth(body) == 4
    assert decode_json(body)["items"] == [[1], {"a": [2]}]


def test_a_number_of_ten_thousand_digits_is_an_answer_error_not_a_value_error_escaping() -> None:
    body = b'{"results": [{"id_user": 1' + b"0" * 9_999 + b"}]}"
    with pytest.raises(AnswerError, match="not usable JSON"):
        decode_json(body)


def test_invalid_utf8_and_html_are_answer_errors() -> None:
    with pytest.raises(AnswerError, match="UTF-8"):
        decode_json(b'{"name": "\xff\xfe"}')
    with pytest.raises(AnswerError, match="not JSON"):
        decode_json(b"<html><body>Proxy error</body></html>")


# -- defect 9: bounded bodies, counted after decompression ---------------------------------------------------
def test_a_gzip_bomb_is_stopped_at_the_limit_of_decompressed_bytes() -> None:
    bomb = gzip.compress(b"0" * (64 << 20), 9)  # 64 MiB in about 64 KB
    assert len(bomb) < 100_000
    reader = BodyReader("gzip", 1 << 20)
    with pytest.raises(AnswerTooLargeError, match="longer than 1 MiB"):
        for start in range(0, len(bomb), 16_384):
            reader.feed(bomb[start : start + 16_384])
    assert len(reader.body) <= 1 << 20


def test_compressed_answers_within_the_limit_are_decoded() -> None:
    body = b'{"results": [' + b", ".join(b'{"id": %d}' % n for n in range(5_000)) + b"]}"
    for encoding, compressed in (
        ("gzip", gzip.compress(body)),
        ("deflate", zlib.compress(body)),
        ("deflate", _raw_deflate(body)),
        (None, body),
        ("identity", body),
    ):
        reader = BodyReader(encoding, len(body))
        for start in range(0, len(compressed), 1000):
            reader.feed(compressed[start : start + 1000])
        assert reader.finish() == body, encoding


def _raw_deflate(body: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(body) + compressor.flush()


def test_a_plain_body_over_the_limit_is_refused_and_a_broken_gzip_is_an_answer_error() -> None:
    reader = BodyReader(None, 10)
    reader.feed(b"0123456789")
    with pytest.raises(AnswerTooLargeError):
        reader.feed(b"x")
    with pytest.raises(AnswerError, match="cannot be decompressed"):
        BodyReader("gzip", 1000).feed(b"this is not gzip at all")
    with pytest.raises(AnswerError, match="was not asked for"):
        BodyReader("br", 1000)


# -- defect 10: Retry-After that is not a number or a date is ignored ------------------------------------------
@pytest.mark.parametrize(
    "value", ["nan", "NaN", "inf", "-inf", "Infinity", "soon", "Mon, 99 Foo 2015 99:99:99 GMT"]
)
def test_retry_after_that_is_not_a_finite_number_or_a_date_is_ignored(value: str) -> None:
    assert parse_retry_after(value) is None


def test_retry_after_numbers_and_dates_still_count() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("1e9") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


# -- the settings ----------------------------------------------------------------------------------------------
def test_limits_read_the_answer_size_and_deadline_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PORTAILDF_MAX_ANSWER_BYTES", "PORTAILDF_DEADLINE_SECONDS", "SYNC_DEADLINE_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    limits = api_limits("PORTAILDF", None, None, 10.0, 3)
    assert limits.max_answer_bytes == 16 << 20
    assert limits.deadline_seconds == DEFAULT_DEADLINE_SECONDS
    assert limits.setting("MAX_ANSWER_BYTES") == "PORTAILDF_MAX_ANSWER_BYTES"
    monkeypatch.setenv("SYNC_DEADLINE_SECONDS", "600")
    monkeypatch.setenv("PORTAILDF_MAX_ANSWER_BYTES", "2000000")
    limits = api_limits("PORTAILDF", None, None, 10.0, 3)
    assert (limits.max_answer_bytes, limits.deadline_seconds) == (2_000_000, 600.0)
    monkeypatch.setenv("PORTAILDF_DEADLINE_SECONDS", "60")
    assert api_limits("PORTAILDF", None, None, 10.0, 3).deadline_seconds == 60.0
    monkeypatch.setenv("PORTAILDF_MAX_ANSWER_BYTES", "lots")
    with pytest.raises(ConfigurationError, match="PORTAILDF_MAX_ANSWER_BYTES"):
        api_limits("PORTAILDF", None, None, 10.0, 3)
    with pytest.raises(ValueError, match="deadline_seconds"):
        ApiLimits(deadline_seconds=0)
