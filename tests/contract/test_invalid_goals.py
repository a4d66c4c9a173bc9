"""Invalid goals: strict where a developer is looking, safe where visitors are.

Each case runs over real HTTP for every adapter (``/track`` in ``tests/contract/apps.py``). This
suite runs under goaltrack's pytest plugin, which makes trackers strict by default: the
production cases set ``strict=False`` explicitly.
"""

from __future__ import annotations

import linecache
import logging
import re

import pytest

from goaltrack.testing.server import FakeAPIServer
from tests.contract.conftest import Serve
from tests.contract.test_contract import GOOGLEBOT, browser, nothing_delivered, visitor_cookie

LONG_VALUE = "x" * 300


def goaltrack_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "goaltrack" and r.levelno == level]


def test_production_cuts_an_overlong_value_to_255_with_one_warning(
    contract: Serve, fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    _, cookies = visitor_cookie(fake_api)
    with contract(strict=False) as app, browser(app, cookies) as client:
        with caplog.at_level(logging.WARNING, logger="goaltrack"):
            response = client.post("/track", params={"key": "comment", "plan": LONG_VALUE})
        assert response.status_code == 200
        assert response.json() == {"queued": True}
        [goal] = fake_api.wait_for_goals(1)
        assert app.tracker.stats.invalid == 0
    assert goal["metadata"] == {"comment": "x" * 255}
    [warning] = goaltrack_records(caplog, logging.WARNING)
    message = warning.getMessage()
    assert "'signup'" in message
    assert "'comment'" in message
    assert goaltrack_records(caplog, logging.ERROR) == []


@pytest.mark.parametrize(
    "params",
    [{"name": "Sign Up!"}, {"key": "Not A Key"}],
    ids=["bad-name", "bad-metadata-key"],
)
def test_production_refuses_an_unrepairable_goal_with_an_error_naming_the_callers_line(
    contract: Serve,
    fake_api: FakeAPIServer,
    caplog: pytest.LogCaptureFixture,
    params: dict[str, str],
) -> None:
    _, cookies = visitor_cookie(fake_api)
    with contract(strict=False) as app, browser(app, cookies) as client:
        with caplog.at_level(logging.ERROR, logger="goaltrack"):
            response = client.post("/track", params=params)
        assert response.status_code == 200
        assert response.json() == {"queued": False}
        assert nothing_delivered(app, fake_api)
        assert app.tracker.stats.invalid == 1
        assert app.tracker.stats.queued == 0
    [error] = goaltrack_records(caplog, logging.ERROR)
    message = error.getMessage()
    assert "rule:" in message
    found = re.search(r"tracked at (.+):(\d+)\)", message)
    assert found is not None, message
    path, line = found.group(1), int(found.group(2))
    # The line of the contract app's view that called track_goal (or goals.track): user code.
    assert path.endswith(("contract/apps.py", "contract/django_urls.py")), path
    assert re.search(r"track_goal\(request|goals\.track\(", linecache.getline(path, line))


def test_strict_raises_invalid_goal_at_the_call_site(
    contract: Serve, fake_api: FakeAPIServer
) -> None:
    _, cookies = visitor_cookie(fake_api)
    with contract(strict=True) as app, browser(app, cookies) as client:
        for params in ({"name": "Sign Up!"}, {"plan": LONG_VALUE}):
            assert client.post("/track", params=params).json() == {"raised": "InvalidGoal"}
        assert nothing_delivered(app, fake_api)
        assert app.tracker.stats.invalid == 0


@pytest.mark.parametrize(
    ("cookie", "user_agent", "reason"),
    [
        (None, None, "no datafast_visitor_id cookie"),
        ("not-a-datafast-id", None, "a malformed datafast_visitor_id cookie"),
        ("valid", GOOGLEBOT, "the User-Agent is a known bot"),
    ],
    ids=["no-cookie", "malformed-cookie", "bot"],
)
def test_debug_says_why_a_goal_was_not_sent(
    contract: Serve,
    fake_api: FakeAPIServer,
    caplog: pytest.LogCaptureFixture,
    cookie: str | None,
    user_agent: str | None,
    reason: str,
) -> None:
    cookies: dict[str, str] = {}
    if cookie == "valid":
        _, cookies = visitor_cookie(fake_api)
    elif cookie is not None:
        cookies = {"datafast_visitor_id": cookie}
    with contract(debug=True) as app:
        client = browser(app, cookies, user_agent) if user_agent else browser(app, cookies)
        with client, caplog.at_level(logging.DEBUG, logger="goaltrack"):
            assert client.post("/track").json() == {"queued": False}
        assert nothing_delivered(app, fake_api)
    assert f"goal 'signup' not sent: {reason}" in caplog.text
