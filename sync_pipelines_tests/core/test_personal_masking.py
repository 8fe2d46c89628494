"""Personal data in a server's error answer is masked where the answer is read (``core.redaction.mask_personal``,
``core.transport.mask_error_answer``): pure functions, no I/O."""

from __future__ import annotations

import json

import httpx
import pytest

from sync_pipelines.core.errors import ApiError
from sync_pipelines.core.redaction import MASK, mask_personal
from sync_pipelines.core.transport import mask_error_answer, sent_values

pytestmark = pytest.mark.unit

EMAIL = "Quirin.LEAKPROBE@Ddt-Probe.gouv.fr"


@pytest.mark.parametrize(
    "form",
    [
        EMAIL,
        EMAIL.lower(),
        EMAIL.upper(),
        "quirin.leakprobe%40ddt-probe.gouv.fr",
        "zo\\u00eb.martin+test@exemple.fr",
        "zoë.martin+test@exemple.fr",
    ],
)
def test_every_form_of_an_email_address_is_masked(form: str) -> None:
    masked = mask_personal(f'{{"detail": "no account for {form} (asked by {form})"}}')
    assert masked == f'{{"detail": "no account for {MASK} (asked by {MASK})"}}'


def test_values_sent_are_masked_whatever_their_case_but_not_numbers_or_short_words() -> None:
    masked = mask_personal(
        "User JANA NOVÁKOVÁ (jana nováková) of class 12, id 4711, ok", ["Jana Nováková", "12", "4711", "ok"]
    )
    assert masked == f"User {MASK} ({MASK}) of class 12, id 4711, ok"


def test_the_values_a_request_sent_are_read_from_its_query_form_and_json_body() -> None:
    query = httpx.Request("GET", "http://x/api/utilisateurs", params={"email": EMAIL, "page": 2})
    assert sent_values(query) == [EMAIL, "2"]
    form = httpx.Request(
        "POST", "http://x/api/login", data={"username": "jana.novakova", "grant_type": "password"}
    )
    assert sent_values(form) == ["jana.novakova", "password"]
    body = httpx.Request(
        "PUT", "http://x/user/7", json={"CustomFields": {"Name": "Jana Nováková", "Grade": 12}}
    )
    assert sent_values(body) == ["Jana Nováková", "12"]


def test_an_error_answer_that_repeats_the_request_is_masked_and_stays_json() -> None:
    request = httpx.Request("GET", "http://x/api/utilisateurs", params={"email": f" {EMAIL} "})
    answer = json.dumps({"email": [f"Aucun utilisateur {EMAIL.lower()}"], "sent": str(request.url)}).encode()
    masked = json.loads(mask_error_answer(answer, request))
    assert masked == {
        "email": [f"Aucun utilisateur {MASK}"],
        "sent": f"http://x/api/utilisateurs?email={MASK}",
    }
    untouched = b'{"detail": "Invalid page."}'
    assert mask_error_answer(untouched, request) is untouched


def test_an_api_error_never_carries_an_email_whoever_built_it() -> None:
    error = ApiError("Portail DF", "GET", "utilisateurs", f"connection reset reading ?email={EMAIL}")
    assert "@" not in str(error) and str(error).endswith(f"?email={MASK}")
