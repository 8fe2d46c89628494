"""One contract, two servers: what RT 5 answers to the requests the sync makes, asserted against a real RT 5
(devkit/request_tracker.py) and against the stand-in (devkit/sandbox/rt.py).

The stand-in is trusted where these pass for both. It runs here with RT's pace (``ServerKnobs``: a cost per request,
two workers, the connection closed after every answer); elsewhere in the suite its cost defaults to 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from devkit.request_tracker import RequestTracker5, RequestTrackerMissing, UserField
from devkit.sandbox.rt import RequestTrackerSandbox, ServerKnobs
from devkit.sandbox.server import ThreadedSandbox

pytestmark = pytest.mark.e2e

USERS = {  # name -> values at creation
    "c-one": {"Grade": "7", "Student ID": "S-1"},
    "c-two": {"Grade": "8"},
    "c-three": {},
    "c-four": {"Legacy": "left-over"},
    "c-five": {"Level": "k"},  # held while Level was free-form; RT keeps it when Level becomes a Select
    "c-six": {},
}
APPLIED = {"Grade", "Student ID", "Year", "Level"}
YEAR_REFUSAL = "Could not add a new value to custom field 'Year': Input must match ^\\d{4}$"
LEVELS = ["K", "1", "2", "12"]  # the Select's list, in its order


@dataclass
class Server:
    kind: str
    url: str  # .../REST/2.0
    tokens: dict[str, str]  # "full", "none", "see"
    ids: dict[str, int]
    fields: dict[str, int]  # custom field name -> id

    def client(self, token: str = "full") -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"token {self.tokens[token]}", "Content-Type": "application/json"},
            timeout=60,
        )


def _real() -> Iterator[Server]:
    try:
        rt = RequestTracker5(workers=2, bcrypt_cost=4)
    except RequestTrackerMissing as exc:
        pytest.skip(str(exc))
    with rt:
        fields = rt.create_user_fields(
            "Grade",
            "Student ID",
            UserField("Legacy", applied=False),
            UserField("Retired", disabled=True),
            UserField("Year", pattern=r"^\d{4}$"),
            "Level",
        )
        ids = rt.create_users([(name, f"{name}@example.test", values) for name, values in USERS.items()])
        # An admin turns the free-form Level into a Select: c-five's "k" stays as it was written.
        assert rt.change_user_field("Level", type="Select", values=LEVELS)["type"] == "Select"
        tokens = {
            "full": rt.create_token("sync-bot"),
            "none": rt.create_token("no-rights", rights=()),
            "see": rt.create_token("see-only", rights=("AdminUsers", "SeeCustomField")),
        }
        yield Server("rt5", rt.rest2_url, tokens, dict(zip(USERS, ids, strict=True)), fields)


def _stand_in() -> Iterator[Server]:
    fields = [
        {"id": 2, "Name": "Grade", "Pattern": ""},
        {"id": 3, "Name": "Student ID"},
        {"id": 4, "Name": "Legacy", "Applied": False},
        {"id": 5, "Name": "Retired", "Disabled": 1},
        {"id": 6, "Name": "Year", "Pattern": r"^\d{4}$"},
        {"id": 7, "Name": "Level", "Type": "Select", "Values": LEVELS},
    ]
    base = {
        1: {"Name": "RT_System", "Privileged": 1},
        6: {"Name": "Nobody"},
        14: {"Name": "root", "Privileged": 1},
    }
    ids = {name: 27 + 2 * number for number, name in enumerate(USERS)}
    users = base | {
        ids[name]: {"Name": name, "EmailAddress": f"{name}@example.test", "CustomFields": values}
        for name, values in USERS.items()
    }
    sandbox = RequestTrackerSandbox(
        users, fields, token="full-token", server=ServerKnobs(request_cost_ms=10, workers=2)
    )
    sandbox.apply_state_change({"action": "add_token", "token": "none-token", "rights": []})
    sandbox.apply_state_change(
        {"action": "add_token", "token": "see-token", "rights": ["AdminUsers", "SeeCustomField"]}
    )
    with ThreadedSandbox(sandbox) as handle:
        yield Server(
            "stand-in",
            f"{handle.url}/REST/2.0",
            {k: f"{k}-token" for k in ("full", "none", "see")},
            ids,
            {str(field["Name"]): int(field["id"]) for field in fields},
        )


@pytest.fixture(scope="module", params=["rt5", "stand-in"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    yield from (_real() if request.param == "rt5" else _stand_in())


def test_unauthorized(server: Server) -> None:
    for headers in ({"Authorization": "token 1-2-wrong"}, {}):
        response = httpx.get(f"{server.url}/user/{server.ids['c-one']}", headers=headers)
        assert (response.status_code, response.json()) == (401, {"message": "Unauthorized"})


def test_unknown_user_on_get_and_put(server: Server) -> None:
    with server.client() as client:
        got = client.get("/user/999999")
        put = client.put("/user/999999", json={"CustomFields": {"Grade": "1"}})
    assert (got.status_code, got.json()) == (404, {"message": "Not Found"})
    assert (put.status_code, put.json()) == (404, {"message": "Resource does not exist; use POST to create"})


def test_every_answer_closes_the_connection(server: Server) -> None:
    with server.client() as client:
        assert client.get("/rt").headers["Connection"].lower() == "close"


def test_user_record_lists_only_fields_applied_to_users(server: Server) -> None:
    with server.client() as client:
        user = client.get(f"/user/{server.ids['c-four']}").json()
    assert user["Disabled"] == "0"
    names = {entry["name"] for entry in user["CustomFields"]}
    assert names == APPLIED  # not "Legacy" (not applied), not "Retired" (disabled)
    entry = next(e for e in user["CustomFields"] if e["name"] == "Grade")
    assert set(entry) >= {"id", "type", "_url", "name", "values"} and isinstance(entry["id"], str)


def test_field_listing_by_lookup_type(server: Server) -> None:
    query = [{"field": "LookupType", "value": "RT::User"}]
    with server.client() as client:
        listed = client.post("/customfields", params={"fields": "Name,Disabled,MaxValues"}, json=query).json()
        every = client.post(
            "/customfields", params={"fields": "Name", "find_disabled_rows": "1"}, json=query
        ).json()
        nothing = client.get("/customfields").json()
    assert [item["Name"] for item in listed["items"]] == ["Grade", "Legacy", "Level", "Student ID", "Year"]
    assert {(item["Disabled"], item["MaxValues"]) for item in listed["items"]} == {("0", "1")}
    assert all(isinstance(item["id"], str) for item in listed["items"])
    assert listed["total"] == 5
    assert "Retired" in {item["Name"] for item in every["items"]}
    assert (nothing["total"], nothing["items"]) == (0, [])


def test_put_messages_quote_old_values(server: Server) -> None:
    user = server.ids["c-two"]
    with server.client() as client:
        first = client.put(f"/user/{user}", json={"CustomFields": {"Grade": "9", "Student ID": "S-2"}})
        again = client.put(f"/user/{user}", json={"CustomFields": {"Grade": "9", "Student ID": "S-2"}})
        cleared = client.put(f"/user/{user}", json={"CustomFields": {"Student ID": ""}})
        nulled = client.put(f"/user/{user}", json={"CustomFields": {"Grade": None}})
        back = client.get(f"/user/{user}").json()
    assert first.status_code == 200
    assert sorted(first.json()) == ["Grade 8 changed to 9", "Student ID S-2 added"]
    assert again.json() == []
    assert cleared.json() == ["Student ID S-2 deleted"]
    assert nulled.json() == ["9 is no longer a value for custom field Grade"]
    assert {e["name"]: e["values"] for e in back["CustomFields"]}["Grade"] == []


def test_unapplied_and_disabled_fields_are_ignored_silently(server: Server) -> None:
    user = server.ids["c-three"]
    with server.client() as client:
        for field in ("Legacy", "Retired", "No Such Field"):
            response = client.put(f"/user/{user}", json={"CustomFields": {field: "x"}})
            assert (response.status_code, response.json()) == (200, [])
        names = {e["name"] for e in client.get(f"/user/{user}").json()["CustomFields"]}
    assert names == APPLIED


def test_pattern_refusal(server: Server) -> None:
    user = server.ids["c-one"]
    with server.client() as client:
        refused = client.put(f"/user/{user}", json={"CustomFields": {"Year": "soon", "Grade": "10"}})
        accepted = client.put(f"/user/{user}", json={"CustomFields": {"Year": "2031"}})
    assert sorted(refused.json()) == sorted([YEAR_REFUSAL, "Grade 7 changed to 10"])
    assert accepted.json() == ["Year 2031 added"]


def test_users_in_pages_with_their_fields(server: Server) -> None:
    params = {"per_page": "2", "fields": "id,Name,CustomFields", "orderby": "id"}
    with server.client() as client:
        first = client.get("/users", params=params).json()
        assert first["count"] == 2 and first["page"] == 1 and first["per_page"] == 2
        assert "prev_page" not in first and "page=2" in first["next_page"]
        assert [item["id"] for item in first["items"]] == sorted(item["id"] for item in first["items"])
        item = first["items"][0]
        assert isinstance(item["id"], int) and isinstance(item["Name"], str)
        assert {e["name"] for e in item["CustomFields"]} == APPLIED
        last = client.get("/users", params={**params, "page": str(first["pages"])}).json()
        assert "next_page" not in last and "prev_page" in last
        capped = client.get("/users", params={"per_page": "500"}).json()
        assert capped["per_page"] == 100
        posted = client.post(
            "/users", params={"per_page": "100", "fields": "id,CustomFields"}, json=[]
        ).json()
        assert posted["total"] == first["total"]


def test_token_without_see_custom_field_sees_no_field(server: Server) -> None:
    with server.client("none") as client:
        listed = client.post("/customfields", json=[{"field": "LookupType", "value": "RT::User"}]).json()
        user = client.get(f"/user/{server.ids['c-one']}").json()
        put = client.put(f"/user/{server.ids['c-one']}", json={"CustomFields": {"Grade": "11"}})
    assert (listed["items"], listed["total"]) == ([], None)
    assert "CustomFields" not in user
    assert (put.status_code, put.json()) == (200, [])


def test_token_without_modify_custom_field_is_refused_per_field(server: Server) -> None:
    with server.client("see") as client:
        put = client.put(f"/user/{server.ids['c-one']}", json={"CustomFields": {"Grade": "11"}})
    assert put.json() == ["Could not add a new value to custom field 'Grade': Permission Denied"]


def test_field_types_in_the_listing_and_a_selects_values_in_its_record(server: Server) -> None:
    """The listing the sync reads anyway gives each field's Type and MaxValues; a Select's record lists its values
    in their order (no other type's does), and ``/values`` pages them with no ``pages`` and no links."""
    query = [{"field": "LookupType", "value": "RT::User"}]
    level = server.fields["Level"]
    with server.client() as client:
        listed = client.post(
            "/customfields", params={"fields": "Name,Type,MaxValues,ValuesClass"}, json=query
        ).json()
        record = client.get(f"/customfield/{level}").json()
        free = client.get(f"/customfield/{server.fields['Grade']}").json()
        first = client.get(f"/customfield/{level}/values", params={"per_page": "3"}).json()
        second = client.get(f"/customfield/{level}/values", params={"per_page": "3", "page": "2"}).json()
    types = {item["Name"]: (item["Type"], item["MaxValues"], item["ValuesClass"]) for item in listed["items"]}
    assert types["Level"] == ("Select", "1", "RT::CustomFieldValues")
    assert types["Grade"] == ("Freeform", "1", "RT::CustomFieldValues")
    assert (record["Type"], record["MaxValues"], record["Values"]) == ("Select", "1", LEVELS)
    assert {"ref": "customfieldvalues", "_url": f"{server.url}/customfield/{level}/values"} in record[
        "_hyperlinks"
    ]
    assert "Values" not in free and len(free["_hyperlinks"]) == 1
    assert {key: first[key] for key in ("count", "page", "per_page", "total")} == {
        "count": 3,
        "page": 1,
        "per_page": 3,
        "total": 4,
    }
    assert "pages" not in first and "next_page" not in first
    assert [item["name"] for item in first["items"] + second["items"]] == LEVELS
    assert {item["type"] for item in first["items"]} == {"customfieldvalue"}


def test_a_select_keeps_a_value_held_in_another_case_and_says_nothing(server: Server) -> None:
    """RT counts a Select's held ``k`` as the ``K`` its list has: a PUT of ``K`` answers no message and changes
    nothing (the user still holds ``k``)."""
    user = server.ids["c-five"]
    with server.client() as client:
        put = client.put(f"/user/{user}", json={"CustomFields": {"Level": "K"}})
        lower = client.put(f"/user/{user}", json={"CustomFields": {"Level": "k"}})
        held = {e["name"]: e["values"] for e in client.get(f"/user/{user}").json()["CustomFields"]}
    assert (put.status_code, put.json(), lower.json()) == (200, [], [])
    assert held["Level"] == ["k"]


def test_a_select_stores_its_lists_spelling_and_refuses_a_value_not_listed(server: Server) -> None:
    """A value in another case is stored, and quoted, as the list spells it; a value the list lacks (spaces around
    a listed one included) is refused in words naming no field, and the other fields of the PUT are written."""
    user = server.ids["c-six"]
    with server.client() as client:
        added = client.put(f"/user/{user}", json={"CustomFields": {"Level": "k"}})
        again = client.put(f"/user/{user}", json={"CustomFields": {"Level": "K"}})
        refused = client.put(f"/user/{user}", json={"CustomFields": {"Level": "7", "Grade": "3"}})
        spaced = client.put(f"/user/{user}", json={"CustomFields": {"Level": " 1 "}})
        held = {e["name"]: e["values"] for e in client.get(f"/user/{user}").json()["CustomFields"]}
    assert added.json() == ["Level K added"]
    assert again.json() == []
    assert sorted(refused.json()) == ["Grade 3 added", "Invalid value for custom field"]
    assert spaced.json() == ["Invalid value for custom field"]
    assert (held["Level"], held["Grade"]) == (["K"], ["3"])


def test_a_field_record_is_forbidden_without_see_custom_field(server: Server) -> None:
    level = server.fields["Level"]
    with server.client("none") as client:
        record = client.get(f"/customfield/{level}")
        values = client.get(f"/customfield/{level}/values")
    assert (record.status_code, record.json()) == (403, {"message": "Forbidden"})
    assert (values.status_code, values.json()) == (403, {"message": "Forbidden"})
