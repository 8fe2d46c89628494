"""The real Request Tracker 5 harness (devkit/request_tracker.py): RT starts, REST2 answers as the sync expects.

Skips, with the reason, only when RT is not installed (devkit/install/request_tracker.sh installs it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from devkit.request_tracker import RequestTracker5, RequestTrackerMissing, UserField

pytestmark = pytest.mark.e2e

FIELDS = (
    "Grade",
    "Student ID",
    UserField("Legacy", applied=False, description="not applied to users"),
    UserField("Retired", disabled=True),
    UserField("Year", pattern=r"^\d{4}$"),
)
# name -> values given at creation; "Legacy" is not applied to users: the value is left-over data.
USERS = {
    "listed": {"Grade": "7", "Student ID": "S-1", "Year": "2031"},
    "graded": {"Grade": "8", "Student ID": "S-2"},
    "legacy": {"Grade": "6", "Legacy": "old"},
    "checked": {"Year": "2030"},
}
APPLIED = ("Grade", "Student ID", "Year")


@dataclass
class World:
    rt: RequestTracker5
    client: httpx.Client
    ids: dict[str, int]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    try:
        rt = RequestTracker5(workers=2, bcrypt_cost=4)  # cheap tokens: ~25 ms a request instead of ~0.2 s
    except RequestTrackerMissing as exc:
        pytest.skip(str(exc))
    rt.start()
    try:
        rt.create_user_fields(*FIELDS)
        created = rt.create_users([(name, f"{name}@example.test", values) for name, values in USERS.items()])
        token = rt.create_token("sync-bot")
        with httpx.Client(
            base_url=rt.rest2_url, headers={"Authorization": f"token {token}"}, timeout=60
        ) as client:
            yield World(rt, client, dict(zip(USERS, created, strict=True)))
    finally:
        rt.stop()


def test_rest2_answers_with_the_token(world: World) -> None:
    response = world.client.get("/rt")
    assert response.status_code == 200, response.text
    assert response.json()["Version"].startswith("5.0.")


def test_a_wrong_token_is_refused(world: World) -> None:
    bot = world.rt.user_ids(["sync-bot"])["sync-bot"]
    for token in ("nonsense", f"1-{bot}-{'0' * 32}"):
        response = httpx.get(f"{world.rt.rest2_url}/rt", headers={"Authorization": f"token {token}"})
        assert response.status_code == 401, (token, response.text)


def test_users_listing_carries_the_custom_field_values(world: World) -> None:
    listed: dict[int, dict] = {}
    page = 1
    while True:
        response = world.client.get(
            "/users", params={"per_page": 100, "page": page, "fields": "id,Name,CustomFields"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        listed.update({int(item["id"]): item for item in body["items"]})
        if page >= body["pages"]:
            break
        page += 1
    for name in ("listed", "checked"):
        item = listed[world.ids[name]]
        assert item["Name"] == name
        values = {field["name"]: field["values"] for field in item["CustomFields"]}
        # Only the fields applied to users (enabled) are listed; each with its values, [] when none.
        assert set(values) == set(APPLIED)
        assert values == {field: [USERS[name][field]] if field in USERS[name] else [] for field in APPLIED}


def test_put_of_an_applied_field_changes_it(world: World) -> None:
    user = world.ids["graded"]
    response = world.client.put(f"/user/{user}", json={"CustomFields": {"Grade": "9"}})
    assert response.status_code == 200, response.text
    assert response.json() == ["Grade 8 changed to 9"]
    assert world.rt.user_fields([user]) == {user: {"Grade": "9", "Student ID": "S-2"}}
    shown = world.client.get(f"/user/{user}").json()["CustomFields"]
    assert {field["name"]: field["values"] for field in shown}["Grade"] == ["9"]


def test_put_of_a_field_not_applied_answers_200_and_changes_nothing(world: World) -> None:
    user = world.ids["legacy"]
    before = world.rt.user_fields([user])
    assert before == {user: {"Grade": "6", "Legacy": "old"}}
    for field in ("Legacy", "Retired"):  # not applied to users; applied but disabled
        response = world.client.put(f"/user/{user}", json={"CustomFields": {field: "new"}})
        assert (response.status_code, response.json()) == (200, []), field
    assert world.rt.user_fields([user]) == before


def test_a_value_against_the_fields_pattern_is_refused_in_a_200(world: World) -> None:
    user = world.ids["checked"]
    response = world.client.put(f"/user/{user}", json={"CustomFields": {"Year": "soon"}})
    assert response.status_code == 200
    [message] = response.json()
    assert "Input must match" in message
    assert world.rt.user_fields([user]) == {user: {"Year": "2030"}}


def test_the_access_log_counts_the_requests(world: World) -> None:
    before = world.rt.access_log_requests()
    user = world.ids["listed"]
    world.client.get(f"/user/{user}")
    world.client.get(f"/user/{user}")
    world.client.put(f"/user/{user}", json={"CustomFields": {"Student ID": "S-1"}})
    httpx.get(f"{world.rt.rest2_url}/rt")
    delta = world.rt.access_log_requests() - before
    assert delta == {
        ("GET", f"/REST/2.0/user/{user}"): 2,
        ("PUT", f"/REST/2.0/user/{user}"): 1,
        ("GET", "/REST/2.0/rt"): 1,
    }
    assert world.rt.access_log_entries()[-1].status == 401
