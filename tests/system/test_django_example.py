"""The example shop under gunicorn and uvicorn, driven over HTTP like a browser would."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

from goaltrack.testing.server import FakeAPIServer
from tests.support.browser import http_browser as browser
from tests.support.paths import EXAMPLES

DEMO_PATH = EXAMPLES / "django_shop" / "demo.py"
BOT_UA = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("django_shop_demo", DEMO_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


demo = load_demo()


@pytest.fixture(scope="module", params=["gunicorn", "uvicorn"])
def shop(
    request: pytest.FixtureRequest,
    fake_api_server: FakeAPIServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    db_path = tmp_path_factory.mktemp(request.param) / "shop.sqlite3"
    env = demo.shop_environment(fake_api_server.api_url("datafast"), db_path)
    with demo.shop_server(request.param, env) as base_url:
        yield base_url


def test_signup_login_purchase(shop: str, fake_api: FakeAPIServer) -> None:
    visitor_id = fake_api.add_pageview("datafast")
    demo.play_visitor(shop, "datafast_visitor_id", visitor_id, plan="team")
    goals = fake_api.wait_for_goals(3, timeout=15)
    by_name = {goal["name"]: goal for goal in goals}
    assert sorted(by_name) == ["login", "purchase", "signup"]
    assert {goal["visitor_id"] for goal in goals} == {visitor_id}
    assert by_name["signup"]["metadata"] == {"referral": "newsletter"}
    assert by_name["purchase"]["metadata"] == {"plan": "team", "amount": "99"}


def test_async_view_with_the_decorator(shop: str, fake_api: FakeAPIServer) -> None:
    visitor_id = fake_api.add_pageview("datafast")
    with browser(shop, visitor_id) as client:
        client.get("/")
        token = client.cookies["csrftoken"]
        assert client.get("/newsletter/").status_code == 405
        response = client.post("/newsletter/", data={"csrfmiddlewaretoken": token})
        assert response.status_code == 302
    [goal] = fake_api.wait_for_goals(1)
    assert (goal["name"], goal["metadata"]) == ("newsletter", {"source": "footer"})


def test_failed_purchase_and_bots_track_nothing(shop: str, fake_api: FakeAPIServer) -> None:
    visitor_id = fake_api.add_pageview("datafast")
    demo.play_visitor(shop, "datafast_visitor_id", visitor_id)
    fake_api.wait_for_goals(3)
    with browser(shop, visitor_id) as client:
        client.get("/login/")
        # not logged in in this client: the purchase page redirects to login, no goal
        response = client.post(
            "/pricing/", data={"csrfmiddlewaretoken": client.cookies["csrftoken"]}
        )
        assert response.status_code == 302
    with browser(shop, visitor_id, BOT_UA) as bot:
        bot.get("/")
        assert bot.post("/newsletter/", data={"csrfmiddlewaretoken": bot.cookies["csrftoken"]})
    with browser(shop, visitor_id) as client:  # the sentinel, after everything above
        client.get("/")
        client.post("/newsletter/", data={"csrfmiddlewaretoken": client.cookies["csrftoken"]})
    goals = fake_api.wait_for_goals(4)
    assert sorted(goal["name"] for goal in goals) == ["login", "newsletter", "purchase", "signup"]


def test_demo_table() -> None:
    table = demo.goal_table(
        [
            {
                "name": "signup",
                "provider": "datafast",
                "visitor_id": "0b8a4b55-6c2f-4c47-9a4e-0f6f7a3f9d21",
                "metadata": {"plan": "pro"},
                "event_id": "abc",
            }
        ]
    )
    assert table.splitlines()[2].split() == [
        "1",
        "signup",
        "datafast",
        "0b8a4b55…",
        "plan=pro",
        "abc",
    ]
