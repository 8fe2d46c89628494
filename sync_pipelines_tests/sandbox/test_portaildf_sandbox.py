"""The Portail DF sandbox over real HTTP: the user-kind sync is only as right as the shapes it is tested against."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devkit.sandbox.portaildf import (
    ADMIN_EMAIL,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    FLAGS_BY_KIND,
    INVALID,
    KINDS,
    NO_EMAIL,
    NOT_FOUND,
    STRUCTURES_DISAGREE,
    PortailDfSandbox,
    SamplePortailDf,
    expected_outcomes,
    generate_portaildf_accounts,
    generate_portaildf_sample,
    generate_zlv_users,
    normalise_email,
    record_kind,
)
from devkit.sandbox.server import SandboxProcess, ThreadedSandbox

pytestmark = pytest.mark.integration

SIZE = 200
SEED = 7
LOOKUP = "GET /api/utilisateurs"
CREDENTIALS = {"username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD}
NOT_PROVIDED = {"detail": "Authentication credentials were not provided."}


def start(**options: object) -> ThreadedSandbox:
    return ThreadedSandbox(PortailDfSandbox.from_sample(size=SIZE, seed=SEED, **options))


@pytest.fixture
def server() -> Iterator[ThreadedSandbox]:
    with start() as handle:
        yield handle


@pytest.fixture
def server_v1() -> Iterator[ThreadedSandbox]:
    with start(auth_version="v1") as handle:
        yield handle


def sample_of(handle: ThreadedSandbox) -> SamplePortailDf:
    sample = handle.sandbox.sample
    assert sample is not None
    return sample


def api(handle: ThreadedSandbox, token: str | None = None, scheme: str = "Bearer") -> httpx.Client:
    headers = {"Authorization": f"{scheme} {token}"} if token else {}
    return httpx.Client(base_url=f"{handle.url}/api", headers=headers, timeout=10)


def login_v2(handle: ThreadedSandbox) -> dict[str, str]:
    response = httpx.post(f"{handle.url}/api/token/", json=CREDENTIALS, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def login_v1(handle: ThreadedSandbox) -> str:
    response = httpx.post(f"{handle.url}/api/api-token-auth/", data=CREDENTIALS, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["token"]


def lookup(client: httpx.Client, email: str) -> dict:
    response = client.get("/utilisateurs", params={"email": email})
    assert response.status_code == 200, response.text
    return response.json()


def exact(records: list[dict], email: str) -> list[dict]:
    """What a correct client keeps of a lookup: the records whose email is the one it asked for."""
    return [record for record in records if normalise_email(record["email"]) == normalise_email(email)]


def jwt_payload(token: str) -> dict:
    parts = token.split(".")
    assert len(parts) == 3 and all(parts)
    body = parts[1] + "=" * (-len(parts[1]) % 4)
    return json.loads(base64.urlsafe_b64decode(body))


def first_user(sample: SamplePortailDf, case: str) -> str:
    assert sample.cases[case], f"the sample has no {case} user"
    return sample.user(sample.cases[case][0]).email or ""


# -- sample data ------------------------------------------------------------------------------------------------
def test_sample_is_deterministic_and_seed_dependent() -> None:
    first = generate_portaildf_sample(300, SEED)
    again = generate_portaildf_sample(300, SEED)
    other = generate_portaildf_sample(300, SEED + 1)
    assert first == again
    assert generate_zlv_users(300, SEED) == first.users
    assert generate_portaildf_accounts(first.users, SEED) == first.accounts
    assert [user.id for user in other.users] != [user.id for user in first.users]
    assert all(uuid.UUID(user.id).version == 4 for user in first.users)
    assert len({user.id for user in first.users}) == 300


def test_sample_proportions_and_email_shapes() -> None:
    sample = generate_portaildf_sample(2000, SEED)
    outcomes = Counter(sample.expected.values())
    with_email = 2000 - outcomes[NO_EMAIL]
    assert 0.80 <= sum(outcomes[kind] for kind in KINDS) / with_email <= 0.90
    assert 0.07 <= outcomes[NOT_FOUND] / with_email <= 0.16
    assert min(outcomes[kind] for kind in KINDS) >= 0.1 * with_email
    # ZLV's email is NOT NULL and unique: one empty, one of spaces only, every address distinct as stored.
    assert outcomes[STRUCTURES_DISAGREE] >= 10 and outcomes[NO_EMAIL] == 2
    assert len(sample.cases["several_structures"]) >= 10
    assert all(user.email is not None for user in sample.users)
    assert len({user.email for user in sample.users}) == len(sample.users)
    assert sum(user.email == ADMIN_EMAIL for user in sample.users) == 1
    emails = [user.email for user in sample.users if user.email]
    assert any(email != email.strip() for email in emails)
    assert any(email.strip() != email.strip().lower() for email in emails)
    assert any("+" in email for email in emails)
    assert any("zoë" in email and "+test@" in email for email in emails)
    assert all(account["email"] == account["email"].strip().lower() for account in sample.accounts)
    deleted = sum(user.deleted_at is not None for user in sample.users)
    assert 0.02 * 2000 <= deleted <= 0.08 * 2000
    assert sample.cases["already_right"] and sample.cases["stale"] and sample.cases["unset"]


def test_small_sample_still_has_every_case() -> None:
    sample = generate_portaildf_sample(12, SEED)
    for case in ("not_found", "near_miss", "contained", "duplicate", "no_email", *KINDS):
        assert sample.cases[case], case
    for kind in KINDS:
        assert all(sample.expected[user_id] == kind for user_id in sample.cases[kind])


def test_kinds_after_sync_and_changes() -> None:
    sample = generate_portaildf_sample(SIZE, SEED)
    after = sample.kinds_after_sync()
    changes = sample.changes()
    for user in sample.users:
        if sample.expected[user.id] in KINDS:
            assert after[user.id] == sample.expected[user.id]
        else:
            assert after[user.id] == user.kind
        assert (user.id in changes) == (after[user.id] != user.kind)
    assert set(sample.cases["already_right"]).isdisjoint(changes)
    assert set(sample.cases["stale"]) <= set(changes)


def test_record_kind_follows_the_seed_mapping() -> None:
    assert {
        kind: record_kind({"exterieur": e, "gestionnaire": g}) for kind, (e, g) in FLAGS_BY_KIND.items()
    } == {kind: kind for kind in KINDS}
    assert record_kind({"exterieur": True}) == INVALID
    assert record_kind({"exterieur": True, "gestionnaire": "yes"}) == INVALID


# -- authentication ------------------------------------------------------------------------------------------------
def test_v1_login_and_lookup(server_v1: ThreadedSandbox) -> None:
    sample = sample_of(server_v1)
    token = login_v1(server_v1)
    # The seed sends multipart form fields (requests' files=); ZLV's TypeScript sends JSON. Same user, same token.
    multipart = httpx.post(
        f"{server_v1.url}/api/api-token-auth/",
        files={"username": (None, DEFAULT_USERNAME), "password": (None, DEFAULT_PASSWORD)},
    )
    as_json = httpx.post(f"{server_v1.url}/api/api-token-auth/", json=CREDENTIALS)
    assert multipart.json() == {"token": token} and as_json.json() == {"token": token}
    user_id = sample.cases["gestionnaire"][0]
    email = sample.user(user_id).email or ""
    with api(server_v1, token, scheme="Token") as client:
        body = lookup(client, email)
        assert body["count"] == 1 and body["next"] is None and body["previous"] is None
        assert record_kind(body["results"][0]) == "gestionnaire"
        assert set(body["results"][0]) == {
            "id_user", "email", "structure", "gestionnaire", "exterieur",
            "cgu_valide", "date_rattachement", "date_expiration", "groupe",
        }  # fmt: skip
        wrong = client.get("/utilisateurs", params={"email": email}, headers={"Authorization": "Token nope"})
        assert (wrong.status_code, wrong.json()) == (401, {"detail": "Invalid token."})
    assert httpx.post(f"{server_v1.url}/api/token/", json=CREDENTIALS).status_code == 404


def test_v1_bad_credentials(server_v1: ThreadedSandbox) -> None:
    response = httpx.post(
        f"{server_v1.url}/api/api-token-auth/", data={"username": DEFAULT_USERNAME, "password": "wrong"}
    )
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}
    missing = httpx.post(f"{server_v1.url}/api/api-token-auth/", data={"username": DEFAULT_USERNAME})
    assert (missing.status_code, missing.json()) == (400, {"password": ["This field is required."]})


def test_v2_login_lookup_expiry_and_refresh(server: ThreadedSandbox) -> None:
    sample = sample_of(server)
    tokens = login_v2(server)
    assert set(tokens) == {"access", "refresh"}
    payload = jwt_payload(tokens["access"])
    assert payload["token_type"] == "access" and payload["exp"] > time.time() + 200
    assert jwt_payload(tokens["refresh"])["token_type"] == "refresh"
    email = first_user(sample, "prestataire")
    with api(server, tokens["access"]) as client:
        assert record_kind(lookup(client, email)["results"][0]) == "prestataire"
        server.change_state({"action": "expire_access_tokens"})
        expired = client.get("/utilisateurs", params={"email": email})
        assert expired.status_code == 401
        body = expired.json()
        assert (
            body["detail"] == "Given token not valid for any token type" and body["code"] == "token_not_valid"
        )
        assert (
            body["messages"][0]["token_type"] == "access"
            and body["messages"][0]["message"] == "Token is expired"
        )
    refreshed = httpx.post(f"{server.url}/api/token/refresh/", json={"refresh": tokens["refresh"]})
    assert refreshed.status_code == 200 and set(refreshed.json()) == {"access"}
    with api(server, refreshed.json()["access"]) as client:
        assert lookup(client, email)["count"] == 1


def test_v2_access_token_expires_by_itself() -> None:
    with start(access_ttl_seconds=1.0) as handle:
        access = login_v2(handle)["access"]
        with api(handle, access) as client:
            assert client.get("/utilisateurs", params={"email": "x@y.fr"}).status_code == 200
            time.sleep(1.2)
            response = client.get("/utilisateurs", params={"email": "x@y.fr"})
            assert response.status_code == 401 and response.json()["code"] == "token_not_valid"


def test_v2_bad_credentials_and_bad_tokens(server: ThreadedSandbox) -> None:
    wrong = httpx.post(f"{server.url}/api/token/", json={"username": DEFAULT_USERNAME, "password": "nope"})
    assert (wrong.status_code, wrong.json()) == (
        401,
        {"detail": "No active account found with the given credentials"},
    )
    missing = httpx.post(f"{server.url}/api/token/", json={})
    assert missing.status_code == 400
    assert missing.json() == {
        "username": ["This field is required."],
        "password": ["This field is required."],
    }
    bad_refresh = httpx.post(f"{server.url}/api/token/refresh/", json={"refresh": "a.b.c"})
    assert bad_refresh.status_code == 401 and bad_refresh.json()["code"] == "token_not_valid"
    tokens = login_v2(server)
    with api(server, tokens["refresh"]) as client:
        response = client.get("/utilisateurs", params={"email": "x@y.fr"})
        assert response.status_code == 401
        assert response.json()["messages"][0]["message"] == "Token has wrong type"
    server.change_state({"action": "expire_refresh_tokens"})
    expired = httpx.post(f"{server.url}/api/token/refresh/", json={"refresh": tokens["refresh"]})
    assert (expired.status_code, expired.json()["detail"]) == (401, "Token is expired")


def test_missing_auth_and_other_scheme_are_not_authenticated(server: ThreadedSandbox) -> None:
    with api(server) as client:
        response = client.get("/utilisateurs", params={"email": "x@y.fr"})
        assert (response.status_code, response.json()) == (401, NOT_PROVIDED)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    with api(server, "0123456789abcdef", scheme="Token") as client:
        response = client.get("/utilisateurs", params={"email": "x@y.fr"})
        assert (response.status_code, response.json()) == (401, NOT_PROVIDED)
    assert httpx.post(f"{server.url}/api/api-token-auth/", data=CREDENTIALS).status_code == 404


def test_both_versions_accepted_when_configured() -> None:
    with start(auth_version="both") as handle:
        v1 = login_v1(handle)
        v2 = login_v2(handle)["access"]
        for token, scheme in ((v1, "Token"), (v2, "Bearer")):
            with api(handle, token, scheme=scheme) as client:
                assert client.get("/utilisateurs", params={"email": "x@y.fr"}).status_code == 200
        assert handle.state()["auth_calls"] == {"token_v1": 1, "token_v2": 1, "refresh": 0}


def test_constructor_refuses_an_unknown_auth_version() -> None:
    with pytest.raises(ValueError, match="auth_version"):
        PortailDfSandbox([], auth_version="v3")


# -- lookups ----------------------------------------------------------------------------------------------------
def test_lookups_of_awkward_emails_are_url_encoded_and_normalised(server: ThreadedSandbox) -> None:
    sample = sample_of(server)
    found = [sample.user(user_id) for kind in KINDS for user_id in sample.cases[kind]]
    shapes = {
        "spaces": [u for u in found if u.email and u.email != u.email.strip()],
        "capitals": [u for u in found if u.email and u.email.strip() != u.email.strip().lower()],
        "plus": [u for u in found if u.email and "+" in u.email],
        "unicode": [u for u in found if u.email and not u.email.isascii()],
    }
    with api(server, login_v2(server)["access"]) as client:
        for shape, users in shapes.items():
            assert users, f"the sample has no found user whose email has {shape}"
            for user in users[:5]:
                assert user.email is not None
                body = lookup(client, user.email)
                assert body["count"] == 1, (shape, user.email)
                assert body["results"][0]["email"] == normalise_email(user.email)
                assert record_kind(body["results"][0]) == sample.expected[user.id]
        plus_email = normalise_email(shapes["plus"][0].email or "")
        # Django decodes an unencoded "+" as a space, so a client that does not encode it finds nobody.
        raw = client.get(f"/utilisateurs?email={plus_email}")
        assert raw.status_code == 200 and raw.json()["count"] == 0


def test_not_found_and_near_miss(server: ThreadedSandbox) -> None:
    sample = sample_of(server)
    with api(server, login_v2(server)["access"]) as client:
        for user_id in sample.cases["not_found"][:5]:
            email = sample.user(user_id).email or ""
            assert lookup(client, email) == {"count": 0, "next": None, "previous": None, "results": []}
        near_miss = first_user(sample, "near_miss")
        body = lookup(client, near_miss)
        assert body["count"] == 1
        assert body["results"][0]["email"].endswith(normalise_email(near_miss))
        assert exact(body["results"], near_miss) == []


def test_several_structures_return_one_record_each(server: ThreadedSandbox) -> None:
    sample = sample_of(server)
    with api(server, login_v2(server)["access"]) as client:
        duplicate = first_user(sample, "duplicate")
        body = lookup(client, duplicate)
        assert body["count"] == 2 and len(exact(body["results"], duplicate)) == 2
        assert record_kind(body["results"][0]) != record_kind(body["results"][1])
        agreeing = sample.user(sample.cases["several_structures"][0]).email or ""
        body = lookup(client, agreeing)
        records = exact(body["results"], agreeing)
        assert len(records) >= 2 and len({record_kind(record) for record in records}) == 1
        contained_id = sample.cases["contained"][0]
        contained = sample.user(contained_id).email or ""
        body = lookup(client, contained)
        assert body["count"] == 2
        assert [record_kind(record) for record in exact(body["results"], contained)] == [
            sample.expected[contained_id]
        ]
        # The longer address comes first, so "take results[0]" (the seed's way) picks the wrong kind.
        assert body["results"][0]["email"] != normalise_email(contained)
        assert record_kind(body["results"][0]) != sample.expected[contained_id]


def test_every_users_expected_outcome_matches_the_server(server: ThreadedSandbox) -> None:
    sample = sample_of(server)
    seen: dict[str, str] = {}
    with api(server, login_v2(server)["access"]) as client:
        for user in sample.users:
            if user.email is None or not user.email.strip():
                seen[user.id] = NO_EMAIL
                continue
            matches = exact(lookup(client, user.email)["results"], user.email)
            kinds = {record_kind(match) for match in matches}
            seen[user.id] = (
                NOT_FOUND if not matches else STRUCTURES_DISAGREE if len(kinds) > 1 else kinds.pop()
            )
    assert seen == sample.expected
    assert {kind for kind in seen.values() if kind in KINDS} == set(KINDS)


def test_listing_without_email_pages_through_every_account(server: ThreadedSandbox) -> None:
    sample = sample_of(server)
    ids: list[int] = []
    previous_links: list[str | None] = []
    with api(server, login_v2(server)["access"]) as client:
        url: str | None = f"{server.url}/api/utilisateurs"
        while url:
            body = client.get(url).json()
            assert body["count"] == len(sample.accounts)
            assert len(body["results"]) <= 50
            ids += [record["id_user"] for record in body["results"]]
            previous_links.append(body["previous"])
            url = body["next"]
        assert client.get("/utilisateurs", params={"page": 99}).json() == {"detail": "Invalid page."}
        assert client.get("/utilisateurs", params={"email": "   ", "page": 1}).json()["count"] == len(
            sample.accounts
        )
    assert ids == sorted(account["id_user"] for account in sample.accounts)
    assert len(previous_links) == -(-len(sample.accounts) // 50) > 2
    assert previous_links[0] is None
    assert previous_links[1] is not None and "page" not in previous_links[1]
    assert previous_links[2] is not None and "page=2" in previous_links[2]


def test_search_is_a_case_insensitive_substring_match_on_large_data() -> None:
    sandbox = PortailDfSandbox.from_sample(size=5000, seed=SEED)
    sample = sandbox.sample
    assert sample is not None
    emails = [user.email for user in sample.users if user.email and user.email.strip()][:400]
    needles = emails + ["@cerema.fr", "anna.", "ann@", "+test@", "ZOË", ".fr"]
    for needle in needles:
        wanted = [a["id_user"] for a in sample.accounts if normalise_email(needle) in a["email"]]
        assert [record["id_user"] for record in sandbox.find_accounts(needle)] == wanted, needle
    started = time.perf_counter()
    for email in emails * 5:
        sandbox.find_accounts(email)
    assert time.perf_counter() - started < 1.0  # 2,000 lookups: far below a scan of 5,500 accounts each


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.from_regex(r"[a-cé+.]{0,4}@?[a-c.]{0,3}(@[a-c]{0,2})?", fullmatch=True), max_size=25),
    st.from_regex(r"[a-cA-Cé+.]{0,3}@?[a-c.]{0,2}", fullmatch=True),
)
def test_search_agrees_with_a_plain_scan(emails: list[str], needle: str) -> None:
    accounts = [{"id_user": number, "email": email} for number, email in enumerate(emails, start=1)]
    sandbox = PortailDfSandbox(accounts)
    key = normalise_email(needle)
    wanted = (
        [a["id_user"] for a in accounts if key in a["email"].lower()]
        if key
        else [a["id_user"] for a in accounts]
    )
    assert [record["id_user"] for record in sandbox.find_accounts(needle)] == wanted


# -- fault hooks --------------------------------------------------------------------------------------------------
def test_set_record_fields_breaks_one_record(server: ThreadedSandbox) -> None:
    sample = sample_of(server)
    dropped_id, yes_id = sample.cases["aucun"][:2]
    dropped, yes = sample.user(dropped_id).email or "", sample.user(yes_id).email or ""
    server.change_state({"action": "set_record_fields", "email": dropped, "drop": ["exterieur"]})
    server.change_state(
        {"action": "set_record_fields", "email": yes.upper(), "fields": {"gestionnaire": "yes"}}
    )
    with api(server, login_v2(server)["access"]) as client:
        assert "exterieur" not in lookup(client, dropped)["results"][0]
        assert lookup(client, yes)["results"][0]["gestionnaire"] == "yes"
    outcomes = expected_outcomes(sample.users, server.state()["accounts"])
    assert outcomes[dropped_id] == INVALID and outcomes[yes_id] == INVALID
    assert sum(outcome == INVALID for outcome in outcomes.values()) == 2


def test_set_record_fields_can_move_an_email(server: ThreadedSandbox) -> None:
    sample = sample_of(server)
    email = first_user(sample, "prestataire")
    server.change_state(
        {"action": "set_record_fields", "email": email, "fields": {"email": "moved@exemple.fr"}}
    )
    with api(server, login_v2(server)["access"]) as client:
        assert lookup(client, email)["count"] == 0
        assert lookup(client, "MOVED@exemple.fr")["count"] == 1


def test_html_for_email_answers_that_lookup_only(server: ThreadedSandbox) -> None:
    sample = sample_of(server)
    single = [user_id for user_id in sample.cases["gestionnaire"] if user_id in sample.cases["found"]]
    broken, broken_502, fine = (sample.user(user_id).email or "" for user_id in single[:3])
    server.change_state({"action": "html_for_email", "email": broken})
    server.change_state({"action": "html_for_email", "email": broken_502, "status": 502})
    with api(server, login_v2(server)["access"]) as client:
        page = client.get("/utilisateurs", params={"email": broken})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        with pytest.raises(json.JSONDecodeError):
            page.json()
        gateway = client.get("/utilisateurs", params={"email": broken_502})
        assert gateway.status_code == 502 and "Bad Gateway" in gateway.text
        assert lookup(client, fine)["count"] == 1
        server.change_state({"action": "clear_html_for_email"})
        assert lookup(client, broken)["count"] == 1


def test_add_and_remove_account(server: ThreadedSandbox) -> None:
    before = server.state()["account_count"]
    server.change_state(
        {"action": "add_account", "email": "nouvelle@exemple.fr", "exterieur": True, "gestionnaire": True}
    )
    server.change_state(
        {"action": "add_account", "account": {"email": "nouvelle@exemple.fr", "structure": 9}}
    )
    with api(server, login_v2(server)["access"]) as client:
        body = lookup(client, "Nouvelle@Exemple.fr")
        assert body["count"] == 2
        assert [record_kind(record) for record in body["results"]] == ["prestataire, gestionnaire", "aucun"]
        assert body["results"][1]["id_user"] > body["results"][0]["id_user"]
        server.change_state({"action": "remove_account", "email": "NOUVELLE@exemple.fr"})
        assert lookup(client, "nouvelle@exemple.fr")["count"] == 0
    assert server.state()["account_count"] == before
    with pytest.raises(httpx.HTTPStatusError):
        server.change_state({"action": "remove_account", "email": "nobody@nowhere.fr"})


def test_set_password_and_revoke_tokens(server: ThreadedSandbox) -> None:
    access = login_v2(server)["access"]
    server.change_state({"action": "set_password", "password": "rotated"})
    assert httpx.post(f"{server.url}/api/token/", json=CREDENTIALS).status_code == 401
    rotated = httpx.post(
        f"{server.url}/api/token/", json={"username": DEFAULT_USERNAME, "password": "rotated"}
    )
    assert rotated.status_code == 200
    with api(server, access) as client:
        assert client.get("/utilisateurs", params={"email": "x@y.fr"}).status_code == 200
        server.change_state({"action": "revoke_tokens"})
        assert client.get("/utilisateurs", params={"email": "x@y.fr"}).status_code == 401


def test_unknown_action_is_refused(server: ThreadedSandbox) -> None:
    with pytest.raises(httpx.HTTPStatusError):
        server.change_state({"action": "teleport"})


# -- counters -----------------------------------------------------------------------------------------------------
def test_counters_and_state_snapshot(server: ThreadedSandbox) -> None:
    sample = sample_of(server)
    tokens = login_v2(server)
    httpx.post(f"{server.url}/api/token/", json={"username": "x", "password": "y"})
    httpx.post(f"{server.url}/api/token/refresh/", json={"refresh": tokens["refresh"]})
    with api(server, tokens["access"]) as client:
        for user_id in sample.cases["found"][:7]:
            lookup(client, sample.user(user_id).email or "")
    assert server.requests(LOOKUP) == 7
    assert server.requests("POST /api/token/") == 2
    state = server.state()
    assert state["auth_calls"] == {"token_v1": 0, "token_v2": 2, "refresh": 1}
    assert state["auth_failures"] == {"token_v1": 0, "token_v2": 1, "refresh": 0}
    assert state["system"] == "portaildf" and state["auth_version"] == "v2"
    assert state["account_count"] == len(state["accounts"]) == len(sample.accounts)
    assert state["accounts"] == sample.accounts


def test_command_line_sandbox_serves_the_sample() -> None:
    with SandboxProcess("portaildf", ["--size", "50", "--seed", str(SEED)]) as handle:
        sample = generate_portaildf_sample(50, SEED)
        access = httpx.post(f"{handle.url}/api/token/", json=CREDENTIALS).json()["access"]
        user_id = sample.cases["found"][0]
        with httpx.Client(
            base_url=f"{handle.url}/api", headers={"Authorization": f"Bearer {access}"}
        ) as client:
            body = lookup(client, sample.user(user_id).email or "")
        assert record_kind(body["results"][0]) == sample.expected[user_id]
        assert handle.state()["accounts"] == sample.accounts
