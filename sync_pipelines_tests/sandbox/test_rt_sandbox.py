"""The RT REST2 sandbox over real HTTP: the RT sync is only as right as the shapes and quirks it is tested against."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from devkit.sandbox.rt import GRADE_PATTERN, RequestTrackerSandbox
from devkit.sandbox.sample_data import SampleStudent, generate_students
from devkit.sandbox.server import Knobs, SandboxProcess, ThreadedSandbox

pytestmark = pytest.mark.integration

SIZE = 40
SEED = 7
TOKEN = "sandbox-rt-token"
AUTH = {"Authorization": f"token {TOKEN}"}
# A PUT to an unknown user; a GET says "Not Found" (RT 5.0.3).
NOT_FOUND = {"message": "Resource does not exist; use POST to create"}
REFUSED_GRADE = "Could not add a new value to custom field 'Grade': Input must match [Grade pattern]"
PUT_USER = "PUT /REST/2.0/user/{id}"
GET_USER = "GET /REST/2.0/user/{id}"


@pytest.fixture
def server() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(RequestTrackerSandbox.from_sample(size=SIZE, seed=SEED)) as handle:
        yield handle


@pytest.fixture
def client(server: ThreadedSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/REST/2.0", headers=AUTH, timeout=10) as http:
        yield http


def students_with_user() -> list[SampleStudent]:
    return [student for student in generate_students(SIZE, SEED) if student.rt_user_id is not None]


def custom_fields(server: ThreadedSandbox, user_id: int) -> dict[str, list[str]]:
    return server.state()["users"][str(user_id)]["CustomFields"]


def student_with_both_fields_wrong(server: ThreadedSandbox) -> SampleStudent:
    """A student whose RT user needs both fields written: the case where a sync sends two values at once."""
    for student in students_with_user():
        fields = custom_fields(server, student.rt_user_id)
        if fields["Grade"] not in ([], [student.grade]) and fields["Student ID"] != [student.student_id]:
            return student
    raise AssertionError("the sample has no user with both fields wrong")


def cf_values(user_json: dict) -> dict[str, list[str]]:
    return {field["name"]: field["values"] for field in user_json["CustomFields"]}


# -- sample data ------------------------------------------------------------------------------------------
def test_from_sample_is_deterministic_and_mostly_out_of_date() -> None:
    first = RequestTrackerSandbox.from_sample(size=2000, seed=SEED).state_snapshot()
    again = RequestTrackerSandbox.from_sample(size=2000, seed=SEED).state_snapshot()
    other_seed = RequestTrackerSandbox.from_sample(size=2000, seed=SEED + 1).state_snapshot()
    assert first == again
    assert first != other_seed
    students = [s for s in generate_students(2000, SEED) if s.rt_user_id is not None]
    assert {str(s.rt_user_id) for s in students} <= set(first["users"])
    assert first["users"]["14"]["Name"] == "root"
    correct = sum(
        first["users"][str(s.rt_user_id)]["CustomFields"]["Grade"] == [s.grade]
        and first["users"][str(s.rt_user_id)]["CustomFields"]["Student ID"] == [s.student_id]
        for s in students
    )
    assert 0.15 < correct / len(students) < 0.25
    names = {field["Name"]: field["LookupType"] for field in first["custom_fields"]}
    assert names == {
        "Severity": "RT::Queue-RT::Ticket",
        "Grade": "RT::User",
        "Student ID": "RT::User",
        "Department": "RT::User",
    }
    json.dumps(first)  # the admin endpoint serves it as JSON


# -- auth ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "token wrong"}, {"Authorization": f"Bearer {TOKEN}"}],
    ids=["missing", "wrong-token", "wrong-scheme"],
)
def test_unauthorized_requests_get_401_json(server: ThreadedSandbox, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/user/1001"), ("PUT", "/user/1001"), ("GET", "/customfields")]:
        response = httpx.request(method, f"{server.url}/REST/2.0{path}", headers=headers, json={})
        assert response.status_code == 401
        assert response.json() == {"message": "Unauthorized"}
    assert (
        custom_fields(server, 1001)
        == RequestTrackerSandbox.from_sample(SIZE, SEED).state_snapshot()["users"]["1001"]["CustomFields"]
    )


# -- GET user --------------------------------------------------------------------------------------------
def test_get_user_has_rt_shape(server: ThreadedSandbox, client: httpx.Client) -> None:
    student = students_with_user()[0]
    response = client.get(f"/user/{student.rt_user_id}")
    assert response.status_code == 200
    assert response.headers["ETag"].startswith('"')
    user = response.json()
    assert user["id"] == student.rt_user_id
    assert user["Name"] == student.student_id.lower()
    assert user["RealName"] == f"{student.first_name} {student.last_name}"
    assert user["Privileged"] == 0 and user["Disabled"] == "0"
    assert user["_hyperlinks"][0] == {
        "ref": "self",
        "type": "user",
        "id": student.rt_user_id,
        "_url": f"{server.url}/REST/2.0/user/{student.rt_user_id}",
    }
    grade = next(field for field in user["CustomFields"] if field["name"] == "Grade")
    assert grade["id"] == "12" and grade["type"] == "customfield"
    assert grade["_url"] == f"{server.url}/REST/2.0/customfield/12"
    # every user field is listed, the ticket field is not, and values agree with the server's state
    assert cf_values(user) == custom_fields(server, student.rt_user_id)
    assert set(cf_values(user)) == {"Grade", "Student ID", "Department"}


def test_get_user_by_name_is_the_same_record(client: httpx.Client) -> None:
    by_id = client.get("/user/1001").json()
    by_name = client.get(f"/user/{by_id['Name']}").json()
    assert by_name == by_id
    assert client.get("/user/root").json()["id"] == 14


@pytest.mark.parametrize("key", ["999999", "nobody-here", "1%20OR%201=1"])
def test_unknown_user_is_404_with_rt_message(client: httpx.Client, key: str) -> None:
    got, put = client.get(f"/user/{key}"), client.put(f"/user/{key}", json={"CustomFields": {}})
    assert (got.status_code, got.json()) == (404, {"message": "Not Found"})
    assert (put.status_code, put.json()) == (404, NOT_FOUND)


# -- PUT user --------------------------------------------------------------------------------------------
def test_put_both_fields_in_one_request(server: ThreadedSandbox, client: httpx.Client) -> None:
    student = student_with_both_fields_wrong(server)
    before = custom_fields(server, student.rt_user_id)
    response = client.put(
        f"/user/{student.rt_user_id}",
        json={"CustomFields": {"Grade": student.grade, "Student ID": student.student_id}},
    )
    assert response.status_code == 200
    expected = [f"Grade {before['Grade'][0]} changed to {student.grade}"]
    expected.append(
        f"Student ID {before['Student ID'][0]} changed to {student.student_id}"
        if before["Student ID"]
        else f"Student ID {student.student_id} added"
    )
    assert response.json() == expected
    after = custom_fields(server, student.rt_user_id)
    assert after["Grade"] == [student.grade]
    assert after["Student ID"] == [student.student_id]
    assert after["Department"] == before["Department"]
    assert cf_values(client.get(f"/user/{student.rt_user_id}").json())["Grade"] == [student.grade]


def test_put_unchanged_values_answers_empty_array(server: ThreadedSandbox, client: httpx.Client) -> None:
    etag = client.get("/user/1001").headers["ETag"]
    current = custom_fields(server, 1001)
    body = {"CustomFields": {name: values[0] if values else None for name, values in current.items()}}
    response = client.put("/user/1001", json=body)
    assert response.status_code == 200
    assert response.json() == []
    assert custom_fields(server, 1001) == current
    assert client.get("/user/1001").headers["ETag"] == etag


def test_put_by_field_id_and_by_user_name(server: ThreadedSandbox, client: httpx.Client) -> None:
    name = server.state()["users"]["1001"]["Name"]
    response = client.put(
        f"/user/{name}", json={"CustomFields": {"12": "2031", "13": ["S123456", "ignored"]}}
    )
    assert response.status_code == 200
    assert all("changed to" in message or "added" in message for message in response.json())
    assert custom_fields(server, 1001)["Grade"] == ["2031"]
    assert custom_fields(server, 1001)["Student ID"] == ["S123456"]


def test_refused_value_is_reported_in_a_200_and_changes_nothing(
    server: ThreadedSandbox, client: httpx.Client
) -> None:
    client.put("/user/1001", json={"CustomFields": {"Grade": "7"}})
    response = client.put("/user/1001", json={"CustomFields": {"Grade": "13", "Student ID": "S999999"}})
    assert response.status_code == 200
    messages = response.json()
    assert messages[0] == REFUSED_GRADE
    assert messages[1].startswith("Student ID") and "S999999" in messages[1]
    assert custom_fields(server, 1001)["Grade"] == ["7"]
    assert custom_fields(server, 1001)["Student ID"] == ["S999999"]
    # a graduation year passes the same pattern
    assert client.put("/user/1001", json={"CustomFields": {"Grade": 2030}}).json() == [
        "Grade 7 changed to 2030"
    ]


def test_null_clears_a_value_and_is_silent_when_already_empty(
    server: ThreadedSandbox, client: httpx.Client
) -> None:
    client.put("/user/1001", json={"CustomFields": {"Grade": "9"}})
    response = client.put("/user/1001", json={"CustomFields": {"Grade": None}})
    assert response.json() == ["9 is no longer a value for custom field Grade"]
    assert custom_fields(server, 1001)["Grade"] == []
    assert client.put("/user/1001", json={"CustomFields": {"Grade": None}}).json() == []


def test_empty_string_clears_unless_the_pattern_refuses_it(
    server: ThreadedSandbox, client: httpx.Client
) -> None:
    client.put("/user/1001", json={"CustomFields": {"Grade": "9", "Student ID": "S000001"}})
    response = client.put("/user/1001", json={"CustomFields": {"Grade": "", "Student ID": ""}})
    assert response.json() == [REFUSED_GRADE, "Student ID S000001 deleted"]
    assert custom_fields(server, 1001)["Grade"] == ["9"]
    assert custom_fields(server, 1001)["Student ID"] == []


def test_fields_that_are_not_user_fields_are_skipped_silently(
    server: ThreadedSandbox, client: httpx.Client
) -> None:
    before = server.state()["users"]["1001"]
    response = client.put(
        "/user/1001", json={"CustomFields": {"Severity": "High", "3": "Low", "Homeroom": "4B"}}
    )
    assert response.status_code == 200
    assert response.json() == []
    assert server.state()["users"]["1001"] == before


def test_multi_value_field_replaces_all_values(server: ThreadedSandbox, client: httpx.Client) -> None:
    client.put("/user/1001", json={"CustomFields": {"Department": ["Students"]}})
    response = client.put("/user/1001", json={"CustomFields": {"Department": ["Choir", "Chess"]}})
    assert response.json() == [
        "Choir added as a value for Department",
        "Chess added as a value for Department",
        "Students is no longer a value for custom field Department",
    ]
    assert custom_fields(server, 1001)["Department"] == ["Choir", "Chess"]


def test_other_attributes_are_updated_with_messages(server: ThreadedSandbox, client: httpx.Client) -> None:
    old = server.state()["users"]["1001"]["RealName"]
    response = client.put("/user/1001", json={"RealName": "Anna Nová", "CustomFields": {}})
    assert response.json() == [f"RealName changed from '{old}' to 'Anna Nová'"]
    assert client.get("/user/1001").json()["RealName"] == "Anna Nová"


@pytest.mark.parametrize(
    ("content", "content_type", "status", "message"),
    [
        (b"{not json", "application/json", 400, "JSON parse error"),
        (b'["Grade"]', "application/json", 400, "JSON object must be a HASH"),
        (b'{"CustomFields": ["Grade"]}', "application/json", 400, "CustomFields must be a JSON object"),
        (b'{"CustomFields": {"Grade": {"v": 1}}}', "application/json", 400, "Invalid value type"),
        (b"Grade=9", "application/x-www-form-urlencoded", 415, "Unsupported Media Type"),
    ],
)
def test_bad_bodies_are_refused_without_change(
    server: ThreadedSandbox,
    client: httpx.Client,
    content: bytes,
    content_type: str,
    status: int,
    message: str,
) -> None:
    before = server.state()["users"]["1001"]
    response = client.put("/user/1001", content=content, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert response.json()["message"].startswith(message)
    assert server.state()["users"]["1001"] == before


def test_if_match_guards_against_concurrent_edits(server: ThreadedSandbox, client: httpx.Client) -> None:
    etag = client.get("/user/1001").headers["ETag"]
    server.change_state({"action": "set_custom_field", "user_id": 1001, "field": "Grade", "values": ["5"]})
    stale = client.put("/user/1001", json={"CustomFields": {"Grade": "6"}}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert custom_fields(server, 1001)["Grade"] == ["5"]
    fresh = client.get("/user/1001").headers["ETag"]
    assert fresh != etag
    ok = client.put("/user/1001", json={"CustomFields": {"Grade": "6"}}, headers={"If-Match": fresh})
    assert ok.json() == ["Grade 5 changed to 6"]


# -- searches ---------------------------------------------------------------------------------------------
def test_customfields_search_filters_by_lookup_type_and_pages(
    server: ThreadedSandbox, client: httpx.Client
) -> None:
    query = json.dumps([{"field": "LookupType", "value": "RT::User"}])
    first = client.get("/customfields", params={"query": query, "per_page": 2}).json()
    assert (first["count"], first["page"], first["pages"], first["per_page"], first["total"]) == (
        2,
        1,
        2,
        2,
        3,
    )
    assert "prev_page" not in first
    # By SortOrder, then Name (as RT lists them): Department, Grade, Student ID.
    assert first["items"][1] == {
        "type": "customfield",
        "id": "12",
        "_url": f"{server.url}/REST/2.0/customfield/12",
    }
    second = client.get(first["next_page"]).json()
    assert (second["count"], second["page"]) == (1, 2)
    assert "next_page" not in second and "prev_page" in second
    assert [item["id"] for item in first["items"] + second["items"]] == ["14", "12", "13"]

    named = client.post(
        "/customfields?fields=Name,LookupType",
        json=[{"field": "LookupType", "operator": "=", "value": "RT::User"}],
    ).json()
    assert [(item["Name"], item["LookupType"]) for item in named["items"]] == [
        ("Department", "RT::User"),
        ("Grade", "RT::User"),
        ("Student ID", "RT::User"),
    ]
    # Without a query RT lists no custom field at all.
    assert client.get("/customfields").json()["total"] == 0
    # limits on the same field are ORed, like RT's default entry aggregator
    both = client.post(
        "/customfields",
        json=[
            {"field": "LookupType", "value": "RT::User"},
            {"field": "LookupType", "value": "RT::Queue-RT::Ticket"},
        ],
    ).json()
    assert both["total"] == 4


def test_paging_parameters_are_clamped_like_rt(client: httpx.Client) -> None:
    assert client.get("/users", params={"per_page": 1000}).json()["per_page"] == 100
    assert client.get("/users", params={"per_page": 0}).json()["per_page"] == 20
    assert client.get("/users", params={"page": "x"}).json()["page"] == 1
    beyond = client.get("/users", params={"page": 99}).json()
    assert beyond["items"] == [] and beyond["count"] == 0
    assert beyond["prev_page"].endswith(f"page={beyond['pages']}")


def test_users_search_by_name_email_id_and_custom_field(
    server: ThreadedSandbox, client: httpx.Client
) -> None:
    student = students_with_user()[0]
    name = student.student_id.lower()
    by_name = client.post("/users", json=[{"field": "Name", "value": name.upper()}]).json()
    assert by_name["total"] == 1
    # a user's collection id is its name, as in RT
    assert by_name["items"] == [{"type": "user", "id": name, "_url": f"{server.url}/REST/2.0/user/{name}"}]
    email = server.state()["users"][str(student.rt_user_id)]["EmailAddress"]
    by_email = client.get(
        "/users",
        params={"query": json.dumps([{"field": "EmailAddress", "value": email}]), "fields": "id,RealName"},
    ).json()
    assert by_email["items"][0]["id"] == student.rt_user_id
    assert by_email["items"][0]["RealName"] == f"{student.first_name} {student.last_name}"
    above = client.post("/users", json=[{"field": "id", "operator": ">=", "value": 1000}]).json()
    assert above["total"] == len(students_with_user())
    server.change_state({"action": "set_custom_field", "user_id": 1001, "field": "Grade", "values": ["2029"]})
    by_grade = client.post(
        "/users?fields=CustomFields", json=[{"field": "CustomField.{Grade}", "value": "2029"}]
    )
    items = by_grade.json()["items"]
    assert [item["id"] for item in items] == [server.state()["users"]["1001"]["Name"]]
    assert cf_values(items[0])["Grade"] == ["2029"]


def test_search_with_bad_query_is_400(client: httpx.Client) -> None:
    response = client.get("/users", params={"query": "[{"})
    assert response.status_code == 400
    assert response.json()["message"].startswith("JSON parse error")
    response = client.post("/users", json={"field": "Name"})
    assert response.status_code == 400
    assert response.json() == {"message": "JSON object must be a ARRAY"}


def test_get_custom_field_record(client: httpx.Client) -> None:
    grade = client.get("/customfield/12").json()
    # Numbers but the id are strings, as RT gives them.
    assert (grade["id"], grade["Name"], grade["LookupType"], grade["MaxValues"]) == (
        12,
        "Grade",
        "RT::User",
        "1",
    )
    assert grade["Pattern"] == GRADE_PATTERN
    assert client.get("/customfield/14").json()["MaxValues"] == "0"
    assert client.get("/customfield/999").status_code == 404


# -- counters and admin -----------------------------------------------------------------------------------
def test_per_endpoint_counters(server: ThreadedSandbox, client: httpx.Client) -> None:
    server.reset_counters()
    for _ in range(3):
        client.put("/user/1001", json={"CustomFields": {"Grade": "3"}})
    client.get("/user/1001")
    client.get("/customfields")
    client.get("/no/such/thing")
    assert server.requests(PUT_USER) == 3
    assert server.requests(GET_USER) == 1
    assert server.requests("GET /REST/2.0/customfields") == 1
    assert server.requests("GET /REST/2.0/{tail}") == 1
    assert server.stats()["statuses"] == {"200": 5, "404": 1}


def test_state_changes(server: ThreadedSandbox, client: httpx.Client) -> None:
    server.change_state({"action": "set_custom_field", "user_id": 1001, "field": "Grade", "values": ["5"]})
    assert cf_values(client.get("/user/1001").json())["Grade"] == ["5"]

    server.change_state({"action": "set_pattern", "field": "Grade", "pattern": "^[0-9]+$"})
    assert client.put("/user/1001", json={"CustomFields": {"Grade": "K"}}).json() == [
        "Could not add a new value to custom field 'Grade': Input must match ^[0-9]+$"
    ]

    server.change_state({"action": "remove_custom_field", "name": "Grade"})
    assert client.put("/user/1001", json={"CustomFields": {"Grade": "6"}}).json() == []
    assert "Grade" not in cf_values(client.get("/user/1001").json())
    assert "Grade" not in custom_fields(server, 1001)

    server.change_state({"action": "delete_user", "user_id": 1001})
    assert client.get("/user/1001").status_code == 404

    server.change_state({"action": "set_token", "token": "rotated"})
    assert client.get("/user/root").status_code == 401
    assert client.get("/user/root", headers={"Authorization": "token rotated"}).status_code == 200


def test_unknown_state_action_is_refused(server: ThreadedSandbox) -> None:
    with pytest.raises(httpx.HTTPStatusError):
        server.change_state({"action": "explode"})


# -- knobs ------------------------------------------------------------------------------------------------
def test_max_concurrency_answers_429_with_retry_after(server: ThreadedSandbox) -> None:
    server.set_knobs(max_concurrency=1, latency_ms=300, retry_after_seconds=2)

    def get(_: int) -> httpx.Response:
        return httpx.get(f"{server.url}/REST/2.0/user/1001", headers=AUTH, timeout=10)

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(get, range(4)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(200) >= 1 and statuses.count(429) >= 1
    refused = next(response for response in responses if response.status_code == 429)
    assert refused.headers["Retry-After"] == "2"
    assert refused.json() == {"message": "Too many requests"}
    assert server.stats()["max_in_flight"] == 1


def test_error_rate_one_gives_server_errors(server: ThreadedSandbox, client: httpx.Client) -> None:
    server.set_knobs(error_rate=1.0, seed=3)
    statuses = {client.get("/user/1001").status_code for _ in range(10)}
    assert statuses <= {500, 502, 503} and statuses
    server.set_knobs(error_rate=0.0)
    assert client.get("/user/1001").status_code == 200


def test_burst_429_then_recovers(server: ThreadedSandbox, client: httpx.Client) -> None:
    server.set_knobs(burst_429=2)
    statuses = [client.put("/user/1001", json={"CustomFields": {"Grade": "4"}}).status_code for _ in range(3)]
    assert statuses == [429, 429, 200]
    assert custom_fields(server, 1001)["Grade"] == ["4"]
    assert server.requests(PUT_USER) == 3


def test_constructor_with_own_users_and_knobs() -> None:
    sandbox = RequestTrackerSandbox(
        users={5: {"Name": "alice", "CustomFields": {"Grade": ["K"]}}},
        custom_fields=[{"id": 1, "Name": "Grade", "LookupType": "RT::User"}],
        token="t",
        knobs=Knobs(latency_ms=1),
    )
    assert sandbox.state_snapshot()["users"]["5"]["CustomFields"] == {"Grade": ["K"]}
    assert sandbox.state_snapshot()["custom_fields"][0]["Pattern"] == GRADE_PATTERN
    with ThreadedSandbox(sandbox) as handle:
        response = httpx.put(
            f"{handle.url}/REST/2.0/user/alice",
            headers={"Authorization": "token t"},
            json={"CustomFields": {"Grade": "1"}},
        )
        assert response.json() == ["Grade K changed to 1"]


# -- as a subprocess ----------------------------------------------------------------------------------------
def test_runs_as_a_subprocess() -> None:
    with SandboxProcess("rt", ["--size", "10"]) as handle:
        users = handle.state()["users"]
        student_ids = sorted(int(user_id) for user_id in users if int(user_id) > 1000)
        assert student_ids
        response = httpx.get(f"{handle.url}/REST/2.0/user/{student_ids[0]}", headers=AUTH, timeout=10)
        assert response.status_code == 200
        assert response.json()["Name"] == users[str(student_ids[0])]["Name"]
        assert handle.requests(GET_USER) == 1
