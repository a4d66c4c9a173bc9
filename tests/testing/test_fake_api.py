"""The fake API against its contract, over real HTTP (httpx -> uvicorn on 127.0.0.1)."""

from __future__ import annotations

import html
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from goaltrack.testing import cli as fake_api_cli
from goaltrack.testing.fake_api import PROVIDERS, FakeAPIState, create_app
from goaltrack.testing.fake_api.app import quick_help
from goaltrack.testing.server import FakeAPIServer
from tests.support.waiting import wait_until

KEYS = {
    "datafast": "df_website_key_0123456789abcdef",
    "faurya": "faurya_key_0123456789abcdef",
    "flowsery": "flow_key_0123456789abcdef",
}
DFT_TOKEN = "dft_account_token_0123456789abcdef"
FLOW_WS_TOKEN = "flow_ws_workspace_token_0123456789abcdef"
VISITOR_FIELD = {"datafast": "datafast_visitor_id", "faurya": "faurya_visitor_id"}
OBJECT_ID = re.compile(r"[0-9a-f]{24}")
NEEDS_PAGEVIEW = ("datafast", "faurya")


@pytest.fixture(scope="module")
def shared_client(fake_api_server: FakeAPIServer) -> Iterator[httpx.Client]:
    # One client for the module: creating an httpx.Client costs tens of milliseconds.
    with httpx.Client(base_url=fake_api_server.url, timeout=10) as client:
        yield client


@pytest.fixture
def client(fake_api: FakeAPIServer, shared_client: httpx.Client) -> httpx.Client:
    """A client of the session's fake API, which ``fake_api`` has just emptied."""
    return shared_client


def goal_body(fake_api: FakeAPIServer, provider: str, **fields: Any) -> dict[str, Any]:
    """A valid body for ``provider``, for a visitor with a pageview; ``fields`` override."""
    body: dict[str, Any] = {"name": "signup"}
    if provider in VISITOR_FIELD:
        body[VISITOR_FIELD[provider]] = fake_api.add_pageview(provider)
    else:
        body["visitorUid"] = str(uuid.uuid4())
    body.update(fields)
    return body


def post_goal(
    client: httpx.Client,
    provider: str,
    body: object,
    *,
    key: str | None = None,
    params: dict[str, str] | None = None,
    path: str = "/api/v1/goals",
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or KEYS[provider]}"}
    return client.post(f"/{provider}{path}", json=body, headers=headers, params=params)


def post_goal_with(
    client: httpx.Client, provider: str, body: object, *, timeout: httpx.Timeout
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEYS[provider]}"}
    return client.post(f"/{provider}/api/v1/goals", json=body, headers=headers, timeout=timeout)


def error_message(provider: str, response: httpx.Response) -> str:
    """The error message, after checking the provider's error envelope."""
    body = response.json()
    if provider == "flowsery":
        assert body["statusCode"] == response.status_code
        assert body["error"] == response.reason_phrase
        return str(body["message"])
    assert body["status"] == "error"
    assert body["error"]["code"] == response.status_code
    return str(body["error"]["message"])


# ---- success and routing ------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["datafast", "faurya"])
def test_success_returns_an_event_id(
    fake_api: FakeAPIServer, client: httpx.Client, provider: str
) -> None:
    body = goal_body(fake_api, provider)
    response = post_goal(client, provider, body)
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "success"
    assert data["data"][0]["message"] == "Custom event created successfully"
    assert OBJECT_ID.fullmatch(data["data"][0]["eventId"])
    [goal] = fake_api.goals
    assert goal["provider"] == provider
    assert goal["visitor_id"] == body[VISITOR_FIELD[provider]]
    assert goal["event_id"] == data["data"][0]["eventId"]


def test_flowsery_success_has_no_event_id(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    body = goal_body(fake_api, "flowsery", sessionUid="s1", timezone="Europe/Paris")
    response = post_goal(client, "flowsery", body)
    assert response.status_code == 200
    assert response.json() == {
        "status": "success",
        "data": [{"message": "Goal created successfully"}],
    }
    [goal] = fake_api.goals
    assert (goal["visitor_id"], goal["session_id"], goal["timezone"]) == (
        body["visitorUid"],
        "s1",
        "Europe/Paris",
    )
    assert goal["event_id"] is None


def test_event_ids_are_fresh(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    ids = {
        post_goal(client, "datafast", goal_body(fake_api, "datafast")).json()["data"][0]["eventId"]
        for _ in range(5)
    }
    assert len(ids) == 5


def test_counts_follow_the_records_without_copying_them(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    before = client.get("/_fake/counts").json()
    assert before == {"goals": 0, "payments": 0, "requests": 0, "pageviews": 0}
    body = goal_body(fake_api, "datafast")  # registers a pageview
    assert post_goal(client, "datafast", body).status_code == 200
    assert post_goal(client, "datafast", {**body, "name": "Bad Name!"}).status_code == 400
    counts = client.get("/_fake/counts").json()
    assert counts == {"goals": 1, "payments": 0, "requests": 2, "pageviews": 1}
    assert counts["goals"] == len(client.get("/_fake/goals").json())


def test_goal_record_fields(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    body = goal_body(fake_api, "datafast", description="Newsletter form", metadata={"plan": "pro"})
    assert post_goal(client, "datafast", body).status_code == 200
    [goal] = client.get("/_fake/goals").json()
    assert set(goal) == {
        "provider",
        "name",
        "visitor_id",
        "session_id",
        "metadata",
        "description",
        "timezone",
        "event_id",
        "website_id",
        "key_hint",
        "received_at",
        "received_at_epoch",
    }
    assert goal["description"] == "Newsletter form"
    assert goal["metadata"] == {"plan": "pro"}


def test_records_carry_the_arrival_as_epoch_seconds(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    before = time.time()
    post_goal(client, "datafast", goal_body(fake_api, "datafast"))
    after = time.time()
    [goal], [request] = fake_api.goals, fake_api.requests
    assert before <= request["received_at_epoch"] <= after
    assert goal["received_at_epoch"] == request["received_at_epoch"]
    iso = datetime.fromisoformat(request["received_at"]).timestamp()
    assert abs(iso - request["received_at_epoch"]) < 0.001
    assert before - 1 <= fake_api.state.pageviews[0]["received_at_epoch"] <= after


def test_bare_path_uses_the_default_provider(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    body = goal_body(fake_api, "datafast")
    headers = {"Authorization": f"Bearer {KEYS['datafast']}"}
    assert client.post("/api/v1/goals", json=body, headers=headers).status_code == 200
    assert fake_api.goals[0]["provider"] == "datafast"
    # Flowsery's CLI path does not exist for DataFast.
    assert client.post("/analytics/api/v1/goals", json=body, headers=headers).status_code == 404


def test_flowsery_as_default_provider_serves_both_bare_paths() -> None:
    with FakeAPIServer(default_provider="flowsery") as server:
        headers = {"Authorization": f"Bearer {KEYS['flowsery']}"}
        for path in ("/api/v1/goals", "/analytics/api/v1/goals"):
            response = httpx.post(server.url + path, json={"name": "signup"}, headers=headers)
            assert response.status_code == 200, path
        assert [goal["provider"] for goal in server.goals] == ["flowsery", "flowsery"]


def test_flowsery_cli_path(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    body = goal_body(fake_api, "flowsery")
    response = post_goal(client, "flowsery", body, path="/analytics/api/v1/goals")
    assert response.status_code == 200
    assert fake_api.goals[0]["provider"] == "flowsery"


def test_unknown_provider_is_404(client: httpx.Client) -> None:
    response = client.post("/plausible/api/v1/goals", json={"name": "signup"})
    assert response.status_code == 404


def test_flowsery_created_status_201() -> None:
    with FakeAPIServer(flowsery_created_status=201) as server:
        response = httpx.post(
            server.api_url("flowsery") + "/api/v1/goals",
            json={"name": "signup"},
            headers={"Authorization": f"Bearer {KEYS['flowsery']}"},
        )
        assert response.status_code == 201
        assert response.json()["data"][0]["message"] == "Goal created successfully"


# ---- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Token df_abc", "Basic abc", "df_abc"]
)
def test_missing_or_malformed_authorization_is_401(
    fake_api: FakeAPIServer, client: httpx.Client, provider: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    body = goal_body(fake_api, provider)
    response = client.post(f"/{provider}/api/v1/goals", json=body, headers=headers)
    assert response.status_code == 401
    assert "Authorization" in error_message(provider, response)
    assert fake_api.goals == []


@pytest.mark.parametrize(
    ("provider", "key"),
    [
        ("datafast", "sk_live_0123456789"),
        ("datafast", "dfx_0123456789"),
        ("datafast", "flow_0123456789"),
        ("flowsery", "df_0123456789"),
        ("flowsery", "flowsery_0123456789"),
    ],
)
def test_key_with_the_wrong_prefix_is_401(
    fake_api: FakeAPIServer, client: httpx.Client, provider: str, key: str
) -> None:
    response = post_goal(client, provider, goal_body(fake_api, provider), key=key)
    assert response.status_code == 401
    assert "Invalid API key" in error_message(provider, response)


def test_faurya_accepts_any_key(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    response = post_goal(client, "faurya", goal_body(fake_api, "faurya"), key="anything-at-all")
    assert response.status_code == 200


def test_dft_token_needs_website_id(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    body = goal_body(fake_api, "datafast")
    missing = post_goal(client, "datafast", body, key=DFT_TOKEN)
    assert missing.status_code == 400
    assert "websiteId is required" in error_message("datafast", missing)
    ok = post_goal(client, "datafast", body, key=DFT_TOKEN, params={"websiteId": "site_1"})
    assert ok.status_code == 200
    assert [goal["website_id"] for goal in fake_api.goals] == ["site_1"]


@pytest.mark.parametrize("param", ["websiteId", "domain"])
def test_flowsery_workspace_token_needs_website_id_or_domain(
    fake_api: FakeAPIServer, client: httpx.Client, param: str
) -> None:
    body = goal_body(fake_api, "flowsery")
    missing = post_goal(client, "flowsery", body, key=FLOW_WS_TOKEN)
    assert missing.status_code == 400
    assert "websiteId or domain" in error_message("flowsery", missing)
    ok = post_goal(client, "flowsery", body, key=FLOW_WS_TOKEN, params={param: "example.com"})
    assert ok.status_code == 200
    assert fake_api.goals[0]["website_id"] == "example.com"


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_revoked_key_is_401(fake_api: FakeAPIServer, client: httpx.Client, provider: str) -> None:
    assert client.post("/_fake/keys", json={"revoke": [KEYS[provider]]}).status_code == 200
    response = post_goal(client, provider, goal_body(fake_api, provider))
    assert response.status_code == 401
    assert "revoked" in error_message(provider, response)


def test_token_without_goals_write_is_403(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    assert client.post("/_fake/keys", json={"no_goals_write": [DFT_TOKEN]}).status_code == 200
    body = goal_body(fake_api, "datafast")
    response = post_goal(client, "datafast", body, key=DFT_TOKEN, params={"websiteId": "site_1"})
    assert response.status_code == 403
    assert "goals:write" in error_message("datafast", response)


@pytest.mark.parametrize(
    ("provider", "key", "params", "suspended"),
    [
        ("datafast", KEYS["datafast"], None, KEYS["datafast"]),
        ("datafast", DFT_TOKEN, {"websiteId": "site_1"}, "site_1"),
        ("faurya", KEYS["faurya"], None, KEYS["faurya"]),
        ("flowsery", FLOW_WS_TOKEN, {"domain": "example.com"}, "example.com"),
    ],
)
def test_suspended_website_is_403(
    fake_api: FakeAPIServer,
    client: httpx.Client,
    provider: str,
    key: str,
    params: dict[str, str] | None,
    suspended: str,
) -> None:
    body = goal_body(fake_api, provider)
    assert post_goal(client, provider, body, key=key, params=params).status_code == 200
    assert client.post("/_fake/keys", json={"suspend": [suspended]}).status_code == 200
    response = post_goal(client, provider, body, key=key, params=params)
    assert response.status_code == 403
    assert "Tracking suspended" in error_message(provider, response)
    assert len(fake_api.goals) == 1


def test_suspending_one_website_leaves_others(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    fake_api.state.suspend("site_1")
    body = goal_body(fake_api, "datafast")
    response = post_goal(client, "datafast", body, key=DFT_TOKEN, params={"websiteId": "site_2"})
    assert response.status_code == 200


# ---- body -------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("raw", [b"{", b"", b"[1]", b'"signup"', b'{"name": NaN}', b"\xff"])
def test_invalid_json_or_not_an_object_is_400(
    client: httpx.Client, provider: str, raw: bytes
) -> None:
    headers = {"Authorization": f"Bearer {KEYS[provider]}", "Content-Type": "application/json"}
    response = client.post(f"/{provider}/api/v1/goals", content=raw, headers=headers)
    assert response.status_code == 400
    assert "Invalid JSON" in error_message(provider, response)


@pytest.mark.parametrize("provider", ["datafast", "faurya"])
@pytest.mark.parametrize(
    ("visitor", "expected"), [(None, "is required"), ("", "must not be empty")]
)
def test_missing_visitor_is_400(
    client: httpx.Client, provider: str, visitor: str | None, expected: str
) -> None:
    body: dict[str, object] = {"name": "signup"}
    if visitor is not None:
        body[VISITOR_FIELD[provider]] = visitor
    response = post_goal(client, provider, body)
    assert response.status_code == 400
    assert f"{VISITOR_FIELD[provider]} {expected}" in error_message(provider, response)


@pytest.mark.parametrize(
    ("provider", "field"),
    [
        ("datafast", "datafast_visitor_id"),
        ("datafast", "visitorId"),
        ("faurya", "faurya_visitor_id"),
        ("faurya", "faurya_session_id"),
        ("flowsery", "visitorUid"),
        ("flowsery", "sessionUid"),
        ("flowsery", "timezone"),
        ("datafast", "description"),
    ],
)
def test_non_string_text_field_is_400(
    fake_api: FakeAPIServer, client: httpx.Client, provider: str, field: str
) -> None:
    body = goal_body(fake_api, provider)
    body.pop("datafast_visitor_id" if field == "visitorId" else field, None)
    body[field] = 42
    response = post_goal(client, provider, body)
    assert response.status_code == 400
    assert f"{field} must be a string" in error_message(provider, response)


def test_datafast_accepts_the_visitor_id_alias(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    visitor = fake_api.add_pageview("datafast")
    response = post_goal(client, "datafast", {"visitorId": visitor, "name": "signup"})
    assert response.status_code == 200
    assert fake_api.goals[0]["visitor_id"] == visitor


def test_faurya_stores_the_session_id(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    body = goal_body(fake_api, "faurya", faurya_session_id="s-123")
    assert post_goal(client, "faurya", body).status_code == 200
    assert fake_api.goals[0]["session_id"] == "s-123"


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize(
    ("name", "expected"), [(None, "name is required"), (7, "must be a string")]
)
def test_missing_or_non_string_name_is_400(
    fake_api: FakeAPIServer, client: httpx.Client, provider: str, name: object, expected: str
) -> None:
    body = goal_body(fake_api, provider)
    if name is None:
        del body["name"]
    else:
        body["name"] = name
    response = post_goal(client, provider, body)
    assert response.status_code == 400
    assert expected in error_message(provider, response)


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("Newsletter Signup", "newsletter_signup"),
        ("plan:pro", "plan:pro"),
        ("A-B_c", "a-b_c"),
        ("x" * 64, "x" * 64),
    ],
)
def test_datafast_normalises_goal_names(
    fake_api: FakeAPIServer, client: httpx.Client, sent: str, stored: str
) -> None:
    response = post_goal(client, "datafast", goal_body(fake_api, "datafast", name=sent))
    assert response.status_code == 200
    assert fake_api.goals[0]["name"] == stored


@pytest.mark.parametrize(
    ("provider", "name"),
    [
        ("datafast", "sign-up!"),
        ("datafast", "x" * 65),
        ("datafast", ""),
        ("datafast", "signup\n"),
        ("datafast", "café"),
        ("datafast", "identify"),
        ("datafast", "Identify"),
        ("faurya", "Signup"),
        ("faurya", "plan:pro"),
        ("faurya", "two words"),
        ("faurya", "x" * 65),
        ("flowsery", "Signup"),
        ("flowsery", "plan:pro"),
        ("flowsery", "two words"),
        ("flowsery", "x" * 65),
        ("flowsery", ""),
    ],
)
def test_invalid_goal_name_is_400(
    fake_api: FakeAPIServer, client: httpx.Client, provider: str, name: str
) -> None:
    response = post_goal(client, provider, goal_body(fake_api, provider, name=name))
    assert response.status_code == 400
    assert "invalid goal name" in error_message(provider, response)
    assert fake_api.goals == []


@pytest.mark.parametrize("provider", ["faurya", "flowsery"])
def test_identify_is_an_ordinary_name_outside_datafast(
    fake_api: FakeAPIServer, client: httpx.Client, provider: str
) -> None:
    response = post_goal(client, provider, goal_body(fake_api, provider, name="identify"))
    assert response.status_code == 200


# ---- metadata ----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_metadata_is_stringified_and_sanitised(
    fake_api: FakeAPIServer, client: httpx.Client, provider: str
) -> None:
    metadata = {
        "plan": "<b>pro</b>",
        "count": 3,
        "ratio": 1.5,
        "whole": 2.0,
        "yes": True,
        "no": False,
        "xss": "<script>alert(1)</script>hi<style>p{}</style>",
        "link": "JavaScript:alert(1)",
        "handler": "x onclick=evil() y",
        "quotes": "a&b \"c\" 'd' <e>",
    }
    response = post_goal(client, provider, goal_body(fake_api, provider, metadata=metadata))
    assert response.status_code in (200, 201)
    assert fake_api.goals[0]["metadata"] == {
        "plan": "pro",
        "count": "3",
        "ratio": "1.5",
        "whole": "2",
        "yes": "true",
        "no": "false",
        "xss": "hi",
        "link": "alert(1)",
        "handler": "x evil() y",
        "quotes": "ab c d ",
    }


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ([["plan", "pro"]], "must be an object"),
        ("plan=pro", "must be an object"),
        ({f"k{i}": "v" for i in range(11)}, "at most 10"),
        ({"Plan": "pro"}, "invalid metadata key"),
        ({"plan type": "pro"}, "invalid metadata key"),
        ({"": "pro"}, "invalid metadata key"),
        ({"k" * 65: "pro"}, "invalid metadata key"),
        ({"plan": {"tier": "pro"}}, "string, number or boolean"),
        ({"plan": ["pro"]}, "string, number or boolean"),
        ({"plan": None}, "string, number or boolean"),
        ({"plan": "x" * 256}, "longer than 255"),
        # 128 emoji are 256 UTF-16 code units, as a JavaScript backend counts them.
        ({"plan": "\U0001f600" * 128}, "longer than 255"),
    ],
)
def test_invalid_metadata_is_400(
    fake_api: FakeAPIServer, client: httpx.Client, provider: str, metadata: object, expected: str
) -> None:
    response = post_goal(client, provider, goal_body(fake_api, provider, metadata=metadata))
    assert response.status_code == 400
    assert expected in error_message(provider, response)
    assert fake_api.goals == []


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_metadata_at_the_limits_is_accepted(
    fake_api: FakeAPIServer, client: httpx.Client, provider: str
) -> None:
    metadata = {f"k{i}": "v" for i in range(9)} | {"k" * 64: "x" * 255}
    response = post_goal(client, provider, goal_body(fake_api, provider, metadata=metadata))
    assert response.status_code in (200, 201)
    assert fake_api.goals[0]["metadata"]["k" * 64] == "x" * 255


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_null_metadata_is_accepted(
    fake_api: FakeAPIServer, client: httpx.Client, provider: str
) -> None:
    response = post_goal(client, provider, goal_body(fake_api, provider, metadata=None))
    assert response.status_code in (200, 201)
    assert fake_api.goals[0]["metadata"] == {}


# ---- pageviews and bots ------------------------------------------------------------------------


@pytest.mark.parametrize("provider", NEEDS_PAGEVIEW)
def test_visitor_without_pageview_is_404(client: httpx.Client, provider: str) -> None:
    body = {VISITOR_FIELD[provider]: str(uuid.uuid4()), "name": "signup"}
    response = post_goal(client, provider, body)
    assert response.status_code == 404
    assert "visitor has no pageviews" in error_message(provider, response)


@pytest.mark.parametrize("provider", NEEDS_PAGEVIEW)
def test_pageviews_count_per_provider(
    fake_api: FakeAPIServer, client: httpx.Client, provider: str
) -> None:
    other = "faurya" if provider == "datafast" else "datafast"
    visitor = fake_api.add_pageview(other)
    response = post_goal(client, provider, {VISITOR_FIELD[provider]: visitor, "name": "signup"})
    assert response.status_code == 404


@pytest.mark.parametrize("provider", NEEDS_PAGEVIEW)
def test_bot_visitor_is_400(client: httpx.Client, provider: str) -> None:
    pageview = client.post("/_fake/pageviews", json={"provider": provider, "bot": True})
    assert pageview.status_code == 200
    body = {VISITOR_FIELD[provider]: pageview.json()["visitor_id"], "name": "signup"}
    response = post_goal(client, provider, body)
    assert response.status_code == 400
    assert "bot" in error_message(provider, response)


@pytest.mark.parametrize("body", [{"name": "signup"}, {"name": "signup", "visitorUid": "unseen"}])
def test_flowsery_needs_no_pageview_nor_visitor(
    fake_api: FakeAPIServer, client: httpx.Client, body: dict[str, str]
) -> None:
    response = post_goal(client, "flowsery", body)
    assert response.status_code == 200
    assert fake_api.goals[0]["visitor_id"] == body.get("visitorUid")


def test_pageview_endpoint(client: httpx.Client) -> None:
    generated = client.post("/_fake/pageviews", json={"provider": "datafast"})
    assert generated.status_code == 200
    assert uuid.UUID(generated.json()["visitor_id"]).version == 4
    given = client.post(
        "/_fake/pageviews", json={"provider": "faurya", "visitor_id": "v-1", "website": "site_1"}
    )
    assert given.json()["visitor_id"] == "v-1"
    body = {"faurya_visitor_id": "v-1", "name": "signup"}
    assert post_goal(client, "faurya", body).status_code == 200
    assert client.post("/_fake/pageviews", json={"provider": "matomo"}).status_code == 400
    assert client.post("/_fake/pageviews", json={"bot": "yes"}).status_code == 400


# ---- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_fail_next(fake_api: FakeAPIServer, client: httpx.Client, provider: str) -> None:
    fake_api.set_faults(fail_next=2)
    body = goal_body(fake_api, provider)
    for _ in range(2):
        response = post_goal(client, provider, body)
        assert response.status_code == 503
        assert "injected" in error_message(provider, response)
    assert fake_api.goals == []
    assert post_goal(client, provider, body).status_code in (200, 201)
    assert len(fake_api.goals) == 1


def test_fail_status_is_configurable(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    response = client.post("/_fake/faults", json={"fail_next": 1, "fail_status": 502})
    assert response.json()["fail_next"] == 1
    assert post_goal(client, "datafast", goal_body(fake_api, "datafast")).status_code == 502


@pytest.mark.parametrize(("retry_after", "header"), [(2, "2"), (2.0, "2"), (0.25, "0.25")])
def test_rate_limit_next_sends_retry_after_seconds(
    fake_api: FakeAPIServer, client: httpx.Client, retry_after: float, header: str
) -> None:
    fake_api.set_faults(rate_limit_next=1, retry_after=retry_after)
    body = goal_body(fake_api, "faurya")
    response = post_goal(client, "faurya", body)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == header
    assert fake_api.goals == []
    assert post_goal(client, "faurya", body).status_code == 200


def test_rate_limit_next_can_send_an_http_date(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    fake_api.set_faults(rate_limit_next=1, retry_after=30, retry_after_http_date=True)
    before = time.time()
    response = post_goal(client, "flowsery", goal_body(fake_api, "flowsery"))
    assert response.status_code == 429
    assert error_message("flowsery", response) == "Too many requests"
    delay = parsedate_to_datetime(response.headers["Retry-After"]).timestamp() - before
    assert 30 <= delay <= 32


def test_reset_next_breaks_the_response(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    fake_api.set_faults(reset_next=1)
    body = goal_body(fake_api, "datafast")
    with pytest.raises(httpx.TransportError):
        post_goal(client, "datafast", body)
    assert fake_api.goals == []
    assert fake_api.requests[0]["fault"] == "reset_next"
    assert post_goal(client, "datafast", body).status_code == 200


def test_latency_delays_the_answer(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    fake_api.set_faults(latency_ms=300)
    started = time.perf_counter()
    response = post_goal(client, "datafast", goal_body(fake_api, "datafast"))
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert 0.3 <= elapsed < 5


def test_error_rate_is_seeded(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    body = goal_body(fake_api, "flowsery")

    def statuses() -> list[int]:
        fake_api.set_faults(error_rate=0.5, error_status=500, seed=7)
        return [post_goal(client, "flowsery", body).status_code for _ in range(20)]

    first = statuses()
    assert first == statuses()
    assert {200, 500} == set(first)


def test_stop_refuses_and_start_accepts_on_the_same_port() -> None:
    with FakeAPIServer() as server:
        port = server.port
        visitor = server.add_pageview("datafast")
        goal = {"datafast_visitor_id": visitor, "name": "signup"}
        headers = {"Authorization": f"Bearer {KEYS['datafast']}"}
        url = server.api_url("datafast") + "/api/v1/goals"
        assert httpx.post(url, json=goal, headers=headers).status_code == 200
        server.stop()
        assert not server.running
        with pytest.raises(httpx.ConnectError):
            httpx.post(url, json=goal, headers=headers)
        server.start()
        assert server.port == port
        assert httpx.post(url, json=goal, headers=headers).status_code == 200
        assert len(server.goals) == 2


def test_faults_endpoint_merges_clears_and_validates(client: httpx.Client) -> None:
    client.post("/_fake/faults", json={"fail_next": 3})
    merged = client.post("/_fake/faults", json={"latency_ms": 5}).json()
    assert (merged["fail_next"], merged["latency_ms"]) == (3, 5)
    cleared = client.post("/_fake/faults", json={"clear": True, "reset_next": 1}).json()
    assert (cleared["fail_next"], cleared["latency_ms"], cleared["reset_next"]) == (0, 0, 1)
    for bad in ({"fail_nxt": 1}, {"fail_next": -1}, {"error_rate": 2}, {"fail_status": 200}):
        response = client.post("/_fake/faults", json={"clear": True, **bad})
        assert response.status_code == 400, bad
    assert client.get("/_fake/faults").json()["reset_next"] == 1


# ---- faults shaped in time ----------------------------------------------------------------------


def sleep_until(epoch: float) -> None:
    """Sleep until a wall-clock moment the test itself scheduled (a window's start or end)."""
    time.sleep(max(0.0, epoch - time.time()))


def in_any(windows: list[tuple[float, float]], at: float) -> bool:
    return any(start <= at < end for start, end in windows)


def test_down_for_answers_the_down_status_then_recovers(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    body = goal_body(fake_api, "faurya")
    before = time.time()
    faults = fake_api.set_faults(down_for=0.5, down_status=502, fail_next=1)
    [(start, end)] = fake_api.outage_windows()
    assert before <= start <= time.time()
    assert end == pytest.approx(start + 0.5)
    assert faults["outages"] == [{"kind": "down", "start": start, "end": end}]
    down = post_goal(client, "faurya", body)
    assert down.status_code == 502
    assert error_message("faurya", down) == "injected outage"
    # The schedule answered first: the count fault waits for the API to be back.
    assert fake_api.state.faults["fail_next"] == 1
    sleep_until(end)
    assert post_goal(client, "faurya", body).status_code == 503  # fail_next
    assert post_goal(client, "faurya", body).status_code == 200
    records = fake_api.requests
    assert [(r["status"], r["fault"]) for r in records] == [
        (502, "down"),
        (503, "fail_next"),
        (200, None),
    ]
    assert records[0]["received_at_epoch"] < end <= records[1]["received_at_epoch"]
    assert len(fake_api.goals) == 1


def test_down_between_is_down_only_inside_the_window(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    body = goal_body(fake_api, "flowsery")
    fake_api.set_faults(down_between=[0.4, 1.0])
    [(start, end)] = fake_api.outage_windows()
    before = post_goal(client, "flowsery", body)
    sleep_until(start + 0.05)
    during = post_goal(client, "flowsery", body)
    sleep_until(end)
    after = post_goal(client, "flowsery", body)
    assert [r.status_code for r in (before, during, after)] == [200, 503, 200]
    assert error_message("flowsery", during) == "injected outage"
    for record in fake_api.requests:
        assert (record["fault"] == "down") == in_any([(start, end)], record["received_at_epoch"])


def test_flap_alternates_up_and_down_for_flap_for(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    body = goal_body(fake_api, "datafast")
    faults = client.post("/_fake/faults", json={"flap": [0.3, 0.2], "flap_for": 1.2}).json()
    flap = faults["flap"]
    assert (flap["up_s"], flap["down_s"]) == (0.3, 0.2)
    assert flap["end"] == pytest.approx(flap["start"] + 1.2)
    # Up 0.3, down 0.2, up 0.3, down 0.2, up 0.2 (the flap ends in an up phase).
    start = flap["start"]
    expected = [(start + 0.3, start + 0.5), (start + 0.8, start + 1.0)]
    windows = fake_api.outage_windows()
    assert windows == [pytest.approx(w) for w in expected]
    assert [o["kind"] for o in faults["outages"]] == ["down", "down"]
    answers = []
    while time.time() < flap["end"] + 0.1:
        answers.append(post_goal(client, "datafast", body).status_code)
        time.sleep(0.02)  # pacing the probes, not synchronising
    records = fake_api.requests
    for record in records:
        down = in_any(windows, record["received_at_epoch"])
        assert (record["status"], record["fault"]) == ((503, "down") if down else (200, None))
    assert {503, 200} == set(answers)
    assert records[-1]["status"] == 200
    assert post_goal(client, "datafast", body).status_code == 200


def test_an_endless_flap_is_described_up_to_its_next_window(fake_api: FakeAPIServer) -> None:
    faults = fake_api.set_faults(flap=(1.0, 0.5))
    flap = faults["flap"]
    assert isinstance(flap, dict)
    assert flap["end"] is None
    start = flap["start"]
    # Within the first up phase: the first down phase is the next one.
    assert fake_api.outage_windows() == [pytest.approx((start + 1.0, start + 1.5))]
    sleep_until(start + 1.05)
    # In the first down phase: the next one (from 2.5 s) is listed too.
    assert fake_api.outage_windows() == [
        pytest.approx((start + 1.0, start + 1.5)),
        pytest.approx((start + 2.5, start + 3.0)),
    ]
    fake_api.clear_faults()
    assert fake_api.outage_windows() == []
    assert fake_api.state.faults["flap"] is None


def test_outage_windows_merge_overlaps_and_the_report_keeps_each(
    fake_api: FakeAPIServer,
) -> None:
    faults = fake_api.set_faults(down_for=1.0, down_between=(0.5, 2.0), blackhole_for=0.2)
    kinds = sorted(str(o["kind"]) for o in faults["outages"])  # type: ignore[union-attr]
    assert kinds == ["blackhole", "down", "down"]
    [(start, end)] = fake_api.outage_windows()
    assert end - start == pytest.approx(2.0)
    fake_api.set_faults(down_between=(5.0, 6.0))
    assert len(fake_api.outage_windows()) == 2


@pytest.mark.slow
def test_blackhole_never_answers_and_is_answered_after_the_window(
    fake_api: FakeAPIServer,
) -> None:
    visitor = fake_api.add_pageview("datafast")
    body = {"datafast_visitor_id": visitor, "name": "signup"}
    url = fake_api.api_url("datafast") + "/api/v1/goals"
    headers = {"Authorization": f"Bearer {KEYS['datafast']}"}
    # The window leaves room for two requests to arrive in it on a loaded machine.
    fake_api.set_faults(blackhole_for=3.0)
    [(_, end)] = fake_api.outage_windows()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=body, headers=headers, timeout=0.3)
    # A request caught by the blackhole stays unanswered after the window is over. It waits
    # held_for s: the request after the window must be answered while it still waits, which
    # took over 3 s with the machine loaded 5x over (1.5 s and 4 s waits ended first there).
    held_for = 10.0
    outcome: queue.Queue[object] = queue.Queue()

    def held_request() -> None:
        started = time.monotonic()
        try:
            httpx.post(url, json=body, headers=headers, timeout=held_for)
            outcome.put("answered")
        except httpx.ReadTimeout:
            outcome.put(time.monotonic() - started)

    thread = threading.Thread(target=held_request)
    thread.start()
    wait_until(lambda: len(fake_api.requests) == 2)
    sleep_until(end)
    assert httpx.post(url, json=body, headers=headers, timeout=5).status_code == 200
    assert thread.is_alive()  # answered after the window, while the held one still waits
    thread.join(timeout=held_for + 10)
    waited = outcome.get(timeout=1)
    assert isinstance(waited, float), waited
    assert waited >= held_for
    records = fake_api.requests
    assert [(r["status"], r["fault"]) for r in records] == [
        (None, "blackhole"),
        (None, "blackhole"),
        (200, None),
    ]
    assert "never answered" in str(records[0]["error"])
    assert len(fake_api.goals) == 1


def test_stopping_the_server_lets_go_of_blackholed_requests() -> None:
    with FakeAPIServer() as server:
        server.set_faults(blackhole_for=30)
        url = server.api_url("flowsery") + "/api/v1/goals"
        errors: queue.Queue[BaseException | None] = queue.Queue()

        def held_request() -> None:
            try:
                httpx.post(url, json={"name": "signup"}, timeout=20)
                errors.put(None)
            except httpx.TransportError as exc:
                errors.put(exc)

        thread = threading.Thread(target=held_request)
        thread.start()
        server.wait_for_requests(1)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2
        thread.join(timeout=10)
        assert isinstance(errors.get(timeout=1), httpx.RemoteProtocolError)


def test_trickle_sends_a_valid_answer_one_byte_at_a_time(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    body = goal_body(fake_api, "datafast")
    fake_api.set_faults(trickle_for=0.5, trickle_bytes_per_s=100)
    started = time.monotonic()
    # A read timeout far below the answer's length: each byte comes in time.
    timeout = httpx.Timeout(5, read=0.3)
    response = post_goal_with(client, "datafast", body, timeout=timeout)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["status"] == "success"
    assert len(response.content) >= 50
    assert elapsed >= len(response.content) / 100
    [record] = fake_api.requests
    assert (record["status"], record["fault"]) == (200, "trickle")
    assert len(fake_api.goals) == 1
    sleep_until(fake_api.state.faults["trickles"][0]["end"])  # type: ignore[index]
    started = time.monotonic()
    assert post_goal(client, "datafast", body).status_code == 200
    assert time.monotonic() - started < len(response.content) / 100 / 2
    assert fake_api.requests[-1]["fault"] is None


def test_trickle_slows_a_rejection_too(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    fake_api.set_faults(trickle_for=1, trickle_bytes_per_s=200, fail_next=1)
    started = time.monotonic()
    response = post_goal(client, "faurya", goal_body(fake_api, "faurya"))
    assert response.status_code == 503
    assert error_message("faurya", response) == "injected failure"
    assert time.monotonic() - started >= len(response.content) / 200
    assert fake_api.requests[0]["fault"] == "trickle"


def test_huge_body_next_pads_the_next_success(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    fake_api.set_faults(huge_body_next=1, huge_body_bytes=3_000_000)
    assert post_goal(client, "datafast", {"datafast_visitor_id": "x", "name": "a"}).status_code == (
        404
    )
    body = goal_body(fake_api, "datafast")
    huge = post_goal(client, "datafast", body)
    assert huge.status_code == 200
    assert len(huge.content) == 3_000_000
    assert huge.headers["content-length"] == "3000000"
    data = huge.json()
    assert data["status"] == "success"
    assert OBJECT_ID.fullmatch(data["data"][0]["eventId"])
    assert set(data["padding"]) == {"x"}
    small = post_goal(client, "datafast", body)
    assert len(small.content) < 200
    assert [r["fault"] for r in fake_api.requests] == [None, "huge_body_next", None]
    assert fake_api.state.faults["huge_body_next"] == 0


def test_fail_names_fails_one_goal_every_time_and_accepts_the_others(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    client.post("/_fake/faults", json={"fail_names": ["poison"], "fail_status": 500})
    for _ in range(3):
        poisoned = post_goal(client, "datafast", goal_body(fake_api, "datafast", name="poison"))
        assert poisoned.status_code == 500
        assert poisoned.json()["error"]["message"] == "injected failure for this goal"
        assert post_goal(client, "datafast", goal_body(fake_api, "datafast")).status_code == 200
    assert [g["name"] for g in fake_api.goals] == ["signup"] * 3
    assert [r["fault"] for r in fake_api.requests] == ["fail_names", None] * 3


@pytest.mark.parametrize(
    "bad",
    [
        {"down_for": 0},
        {"down_for": -1},
        {"down_for": "8"},
        {"down_for": True},
        {"down_between": [2, 1]},
        {"down_between": [-1, 1]},
        {"down_between": [1]},
        {"down_between": "0-1"},
        {"flap": [0, 1]},
        {"flap": [1, 2, 3]},
        {"flap_for": 10},
        {"flap": [1, 1], "flap_for": 0},
        {"blackhole_for": 0},
        {"trickle_for": -0.5},
        {"trickle_bytes_per_s": 0},
        {"down_status": 200},
        {"down_status": 99},
        {"huge_body_next": -1},
        {"huge_body_bytes": 1.5},
        {"fail_names": "poison"},
        {"fail_names": ["poison", 3]},
    ],
)
def test_schedule_fields_are_validated(
    fake_api: FakeAPIServer, client: httpx.Client, bad: dict[str, object]
) -> None:
    with pytest.raises(ValueError, match="fault"):
        fake_api.set_faults(**bad)
    response = client.post("/_fake/faults", json={"clear": True, **bad})
    assert response.status_code == 400
    assert "fault" in response.json()["error"]
    assert fake_api.outage_windows() == []
    assert client.get("/_fake/faults").json()["down_status"] == 503


def test_faults_endpoint_shows_the_schedule_as_wall_clock_times(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    before = time.time()
    response = client.post(
        "/_fake/faults",
        json={"down_between": [1, 2], "blackhole_for": 3, "trickle_for": 4, "down_status": 500},
    )
    after = time.time()
    assert response.status_code == 200
    shown = client.get("/_fake/faults").json()
    assert shown == response.json()
    assert shown["down_status"] == 500
    blackhole, down = shown["outages"]
    assert blackhole["kind"] == "blackhole"
    assert before <= blackhole["start"] <= after
    assert blackhole["end"] == pytest.approx(blackhole["start"] + 3)
    assert down == {
        "kind": "down",
        "start": pytest.approx(blackhole["start"] + 1),
        "end": pytest.approx(blackhole["start"] + 2),
    }
    [trickle] = shown["trickles"]
    assert trickle["end"] - trickle["start"] == pytest.approx(4)
    assert shown["flap"] is None
    assert fake_api.outage_windows() == [(blackhole["start"], blackhole["end"])]


def test_clear_and_reset_empty_the_schedule(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    body = goal_body(fake_api, "flowsery")
    client.post("/_fake/faults", json={"down_for": 60, "flap": [1, 1]})
    assert post_goal(client, "flowsery", body).status_code == 503
    cleared = client.post("/_fake/faults", json={"clear": True}).json()
    assert (cleared["outages"], cleared["flap"]) == ([], None)
    assert post_goal(client, "flowsery", body).status_code == 200
    fake_api.set_faults(down_for=60, trickle_for=60)
    fake_api.reset()
    assert fake_api.state.faults["trickles"] == []
    assert post_goal(client, "flowsery", body).status_code == 200


# ---- Flowsery's rate limit ----------------------------------------------------------------------


def test_flowsery_rate_limit_per_token() -> None:
    with (
        FakeAPIServer(flowsery_rate_limit=3) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        answers = [post_goal(client, "flowsery", {"name": "signup"}) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert [a.headers["RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
        assert all(a.headers["RateLimit-Limit"] == "3" for a in answers)
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
        assert answers[-1].headers["Retry-After"] == answers[-1].headers["RateLimit-Reset"]
        assert error_message("flowsery", answers[-1]) == "Too many requests"
        other = post_goal(client, "flowsery", {"name": "signup"}, key="flow_other_token_1234")
        assert other.status_code == 200
        assert len(server.goals) == 4


def test_flowsery_rate_limit_can_be_disabled() -> None:
    with FakeAPIServer(flowsery_rate_limit=None) as server, httpx.Client(base_url=server.url) as c:
        response = post_goal(c, "flowsery", {"name": "signup"})
        assert response.status_code == 200
        assert "RateLimit-Limit" not in response.headers


def test_rate_limit_headers_only_for_flowsery(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    flowsery = post_goal(client, "flowsery", {"name": "Bad Name"})
    assert flowsery.status_code == 400
    assert flowsery.headers["RateLimit-Limit"] == "600"
    datafast = post_goal(client, "datafast", goal_body(fake_api, "datafast"))
    assert "RateLimit-Limit" not in datafast.headers


# ---- inspection ---------------------------------------------------------------------------------


def test_html_page_escapes_everything(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    visitor = fake_api.add_pageview("flowsery", "<img src=x>")
    body = {"visitorUid": visitor, "name": "signup", "metadata": {"note": "safe"}}
    assert post_goal(client, "flowsery", body).status_code == 200
    page = client.get("/_fake/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<img" not in page.text
    assert "&lt;img src=x&gt;" in page.text
    assert "signup" in page.text


def test_keys_never_appear_in_goals_or_requests(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    post_goal(client, "datafast", goal_body(fake_api, "datafast"))
    post_goal(client, "datafast", {"name": "x"}, key=DFT_TOKEN)
    post_goal(client, "flowsery", {"name": "Bad"}, key=FLOW_WS_TOKEN, params={"domain": "a.b"})
    post_goal(client, "faurya", {"name": "signup"}, key="sk_live_secret_value_0000")
    exposed = client.get("/_fake/goals").text + client.get("/_fake/requests").text
    exposed += client.get("/_fake/").text
    for key in (*KEYS.values(), DFT_TOKEN, FLOW_WS_TOKEN, "sk_live_secret_value_0000"):
        assert key not in exposed
        assert key[-8:] not in exposed
    assert fake_api.goals[0]["key_hint"] == "df_…cdef"


def test_requests_log_every_outcome(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    post_goal(client, "datafast", goal_body(fake_api, "datafast", name="Signup Done"))
    post_goal(client, "datafast", {"datafast_visitor_id": "nobody", "name": "signup"})
    client.post("/datafast/api/v1/goals", json={"name": "signup"})
    logged = client.get("/_fake/requests").json()
    assert [(r["status"], r["name"]) for r in logged] == [
        (200, "Signup Done"),
        (404, "signup"),
        (401, None),
    ]
    assert logged[0]["error"] is None
    assert "no pageviews" in logged[1]["error"]
    assert logged[0]["path"] == "/datafast/api/v1/goals"


def test_reset_endpoint_forgets_everything(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    body = goal_body(fake_api, "datafast")
    post_goal(client, "datafast", body)
    fake_api.set_faults(fail_next=5)
    fake_api.state.revoke_key(KEYS["faurya"])
    assert client.post("/_fake/reset").status_code == 200
    assert client.get("/_fake/goals").json() == []
    assert client.get("/_fake/requests").json() == []
    assert client.get("/_fake/faults").json()["fail_next"] == 0
    assert post_goal(client, "datafast", body).status_code == 404  # the pageview is gone
    assert post_goal(client, "faurya", goal_body(fake_api, "faurya")).status_code == 200


def test_reset_can_keep_the_pageviews(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    body = goal_body(fake_api, "datafast")
    post_goal(client, "datafast", body)
    fake_api.set_faults(down_for=60)
    kept = client.post("/_fake/reset", json={"keep_pageviews": True})
    assert kept.json() == {"status": "reset", "keep_pageviews": True}
    assert (fake_api.goals, fake_api.requests) == ([], [])
    assert [p["visitor_id"] for p in fake_api.state.pageviews] == [body["datafast_visitor_id"]]
    assert post_goal(client, "datafast", body).status_code == 200  # still a known visitor
    fake_api.reset(keep_pageviews=True)
    assert post_goal(client, "datafast", body).status_code == 200
    fake_api.reset()
    assert post_goal(client, "datafast", body).status_code == 404


@pytest.mark.parametrize(
    "body", [{"keep_pageviews": "yes"}, {"keep_pageviews": 1}, {"pageviews": "keep"}, [1]]
)
def test_reset_endpoint_validates(
    fake_api: FakeAPIServer, client: httpx.Client, body: object
) -> None:
    post_goal(client, "datafast", goal_body(fake_api, "datafast"))
    response = client.post("/_fake/reset", json=body)
    assert response.status_code == 400
    assert len(fake_api.goals) == 1


@pytest.mark.parametrize("provider", NEEDS_PAGEVIEW)
def test_require_pageview_false_takes_goals_from_unseen_visitors(provider: str) -> None:
    with (
        FakeAPIServer(require_pageview=False) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        unseen = {VISITOR_FIELD[provider]: str(uuid.uuid4()), "name": "signup"}
        assert post_goal(client, provider, unseen).status_code == 200
        assert server.state.pageviews == []  # nothing is made up
        bot = server.add_pageview(provider, bot=True)
        refused = post_goal(client, provider, {VISITOR_FIELD[provider]: bot, "name": "signup"})
        assert refused.status_code == 400
        assert post_goal(client, provider, {"name": "signup"}).status_code == 400
        assert [goal["visitor_id"] for goal in server.goals] == [unseen[VISITOR_FIELD[provider]]]


def test_keys_endpoint_validates(client: httpx.Client) -> None:
    assert client.post("/_fake/keys", json={"revoke": "df_x"}).status_code == 400
    assert client.post("/_fake/keys", json={"ban": ["df_x"]}).status_code == 400
    assert client.post("/_fake/keys", json={"revoke": ["df_x"]}).json()["revoke"] == 1


# ---- the Python API -----------------------------------------------------------------------------


def test_wait_for_goals_returns_when_they_arrive(fake_api: FakeAPIServer) -> None:
    body = goal_body(fake_api, "datafast")

    def send() -> None:
        with httpx.Client(base_url=fake_api.url) as client:
            for _ in range(3):
                post_goal(client, "datafast", body)

    sender = threading.Thread(target=send)
    sender.start()
    goals = fake_api.wait_for_goals(3, timeout=10)
    sender.join(timeout=10)
    assert len(goals) == 3
    assert len(fake_api.wait_for_requests(3, timeout=1)) == 3


def test_wait_for_goals_times_out_with_the_reason(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    post_goal(client, "datafast", {"datafast_visitor_id": "nobody", "name": "signup"})
    with pytest.raises(
        TimeoutError, match=r"for 1 goal\(s\), got 0.*404: visitor has no pageviews"
    ):
        fake_api.wait_for_goals(1, timeout=0.05)


def test_state_works_without_http() -> None:
    state = FakeAPIState()
    app = create_app(state)
    assert app.state.fake_api is state
    assert create_app().state.fake_api is not state
    with pytest.raises(ValueError, match="unknown fault"):
        state.set_faults(timeout=1)
    with pytest.raises(ValueError, match="unknown provider"):
        state.add_pageview("matomo")
    with pytest.raises(ValueError, match="200 or 201"):
        FakeAPIState(flowsery_created_status=204)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_server_refuses_non_loopback_hosts(host: str) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        FakeAPIServer(host=host)


def test_server_urls(fake_api: FakeAPIServer) -> None:
    assert fake_api.url == f"http://127.0.0.1:{fake_api.port}"
    assert fake_api.api_url("faurya") == f"{fake_api.url}/faurya"
    with pytest.raises(ValueError, match="unknown provider"):
        fake_api.api_url("plausible")
    with pytest.raises(RuntimeError, match="already running"):
        fake_api.start()


def test_server_start_fails_clearly_on_a_busy_port(fake_api: FakeAPIServer) -> None:
    with pytest.raises(OSError, match="in use"):
        FakeAPIServer(port=fake_api.port).start()


# ---- the command line ---------------------------------------------------------------------------


def test_cli_provider_choices_match_the_fake() -> None:
    assert tuple(PROVIDERS) == fake_api_cli.PROVIDER_CHOICES


@pytest.mark.parametrize(
    ("module", "stop_signal"),
    [
        ("goaltrack.testing", signal.SIGTERM),
        ("goaltrack.testing", signal.SIGINT),
    ],
)
def test_cli_serves_until_signalled(module: str, stop_signal: signal.Signals) -> None:
    repo = Path(fake_api_cli.__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0", "--provider", "faurya"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        stdout = process.stdout
        assert stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        # readline() has no timeout: read in a thread, wait on the queue with a deadline.
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        line = lines.get(timeout=15)
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match, line
        assert httpx.get(match.group() + "/_fake/goals", timeout=5).json() == []
        headers = {"Authorization": "Bearer any"}
        response = httpx.post(match.group() + "/api/v1/goals", json={}, headers=headers, timeout=5)
        assert "faurya_visitor_id is required" in response.json()["error"]["message"]
        process.send_signal(stop_signal)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def read_lines_until(stream: IO[str], last: str, timeout: float = 15) -> list[str]:
    """Lines of a child's output up to the one starting with ``last``, within ``timeout``."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))

    # readline() has no timeout: read in a thread, wait on the queue with a deadline.
    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    read: list[str] = []
    while not read or not read[-1].startswith(last):
        read.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))
    return read


def run_printed_curl(line: str, **substitutions: str) -> httpx.Response:
    """Run a ``curl -X POST URL [-H ...] [-d BODY]`` line as printed, with httpx."""
    argv = shlex.split(line)
    assert argv[:3] == ["curl", "-X", "POST"], argv
    url, options = argv[3], argv[4:]
    headers, body = {}, b""
    for flag, value in zip(options[::2], options[1::2], strict=True):
        if flag == "-H":
            name, _, header = value.partition(": ")
            headers[name] = header
        else:
            assert flag == "-d", flag
            for placeholder, actual in substitutions.items():
                value = value.replace(f"<{placeholder}>", actual)
            body = value.encode()
    return httpx.post(url, content=body, headers=headers, timeout=5)


@pytest.mark.parametrize(
    "command",
    [["-m", "goaltrack.testing"], ["-m", "goaltrack.cli", "fake-api"]],
    ids=["python -m goaltrack.testing", "goaltrack fake-api"],
)
def test_cli_says_how_to_get_a_visitor_and_see_the_goals(command: list[str]) -> None:
    process = subprocess.Popen(
        [sys.executable, *command, "--port", "0", "--provider", "faurya"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = read_lines_until(process.stdout, "Stop with")
        url = lines[0].split("listening on ")[1].split()[0]
        assert "pageview" in lines[1]
        pageview_line, answer_line = lines[2].strip(), lines[3].strip()
        assert pageview_line.startswith(f"curl -X POST {url}/_fake/pageviews ")
        # The printed command, run as printed when curl is there.
        if shutil.which("curl"):
            output = subprocess.run(
                shlex.split(pageview_line), capture_output=True, text=True, timeout=10, check=True
            ).stdout
        else:
            output = run_printed_curl(pageview_line).text
        answer = json.loads(output)
        printed = json.loads(answer_line.removeprefix("answers "))
        assert set(answer) == set(printed)
        assert (answer["provider"], answer["bot"]) == (printed["provider"], printed["bot"])
        assert uuid.UUID(answer["visitor_id"]).version == 4
        goal_line = next(line.strip() for line in lines if "/api/v1/goals" in line)
        goal = run_printed_curl(goal_line, visitor_id=answer["visitor_id"])
        assert goal.status_code == 200, goal.text
        goals_url = next(
            re.findall(r"http://\S+/_fake/goals", line) for line in lines if "JSON" in line
        )
        [received] = httpx.get(goals_url[0], timeout=5).json()
        assert (received["name"], received["visitor_id"]) == ("signup", answer["visitor_id"])
        assert any(f"{url}/_fake/ " in line for line in lines)
        # The printed script tag loads the stand-in script, which sets Faurya's visitor cookie.
        [script_url] = [
            re.findall(r'src="([^"]+)"', line)[0] for line in lines if "<script" in line
        ]
        assert script_url == f"{url}/faurya/js/script.js"
        script = httpx.get(script_url, timeout=5)
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert "faurya_visitor_id" in script.text
        resets = [line.strip() for line in lines if f"{url}/_fake/reset" in line]
        keep, forget = sorted(resets, key=len, reverse=True)  # the one with a body first
        assert run_printed_curl(keep).json() == {"status": "reset", "keep_pageviews": True}
        assert run_printed_curl(goal_line, visitor_id=answer["visitor_id"]).status_code == 200
        assert run_printed_curl(forget).json() == {"status": "reset", "keep_pageviews": False}
        assert run_printed_curl(goal_line, visitor_id=answer["visitor_id"]).status_code == 404
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        if process.stdout is not None:
            process.stdout.close()


def test_cli_pageview_free_takes_goals_from_unseen_visitors() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "goaltrack.testing", "--port", "0", "--pageview-free"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = read_lines_until(process.stdout, "Stop with")
        assert lines[1].startswith("Pageview-free")
        url = lines[0].split("listening on ")[1].split()[0]
        body = {"datafast_visitor_id": str(uuid.uuid4()), "name": "signup"}
        headers = {"Authorization": "Bearer df_manual_trial"}
        response = httpx.post(url + "/api/v1/goals", json=body, headers=headers, timeout=5)
        assert response.status_code == 200, response.text
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        if process.stdout is not None:
            process.stdout.close()


def test_the_html_page_shows_the_same_help(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    page = client.get("/_fake/").text
    for line in quick_help(fake_api.url, fake_api.state):
        assert html.escape(line) in page
    assert html.escape(f"curl -X POST {fake_api.url}/_fake/pageviews") in page


def test_cli_refuses_non_loopback_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert fake_api_cli.main(["--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--allow-non-loopback" in capsys.readouterr().err


def test_answers_are_not_held_back_by_nagle(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    # With Nagle's algorithm on, each response waits ~40 ms for a delayed ACK: 50 take >= 2 s.
    started = time.perf_counter()
    for _ in range(50):
        assert client.get("/_fake/goals").status_code == 200
    assert time.perf_counter() - started < 1.5
