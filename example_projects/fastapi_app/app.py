"""A small FastAPI shop that records signups and checkouts as goals with goaltrack.

    cd example_projects/fastapi_app && uvicorn app:app

With no ``GOALTRACK_API_KEY`` in the environment it starts goaltrack's bundled fake API on
127.0.0.1 and plays the provider's tracking script (registers a pageview and sets the visitor
cookie), so the demo works offline: open http://127.0.0.1:8000/. With ``GOALTRACK_API_KEY`` (and
``GOALTRACK_PROVIDER``, ``GOALTRACK_API_URL``, ``GOALTRACK_WEBSITE_ID``) set it tracks for real.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from goaltrack.asgi import GoalTrackerDep, GoalTrackMiddleware, script_global, track_goal

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


class Signup(BaseModel):
    email: str
    plan: str = "free"


class Checkout(BaseModel):
    plan: str
    seats: int = 1


PRICES = {"free": 0, "pro": 12, "team": 29}


def start_demo_api() -> str:
    """Start the bundled fake API for the demo; it lives as long as this process."""
    from goaltrack.testing import FakeAPIServer

    server = FakeAPIServer()
    server.start()
    return server.url


app = FastAPI(title="goaltrack FastAPI example")

if os.environ.get("GOALTRACK_API_KEY"):
    fake_api_url = None
    # No arguments: the process-wide tracker, configured from the GOALTRACK_* variables.
    app.add_middleware(GoalTrackMiddleware)
else:
    fake_api_url = start_demo_api()
    app.add_middleware(
        GoalTrackMiddleware,
        api_key="df_demo_key_not_a_secret",
        provider="datafast",
        api_url=f"{fake_api_url}/datafast",
    )

# {{ goaltrack_script() }} in the templates: the provider's script tag, with the script's website
# id; while goals go to the fake API, the tag loads its stand-in script instead.
templates.env.globals["goaltrack_script"] = script_global(
    tracking_id=os.environ.get("GOALTRACK_TRACKING_ID", "dfid_example_app"),
    api_url=None if fake_api_url is None else f"{fake_api_url}/datafast",
)


@app.get("/", response_class=HTMLResponse)
async def index(request: Request) -> HTMLResponse:
    visitor = request.state.goaltrack_visitor
    response = templates.TemplateResponse(
        request,
        "index.html",
        {
            "visitor": visitor,
            "plans": PRICES,
            "fake_api_url": fake_api_url,
        },
    )
    if fake_api_url is not None and visitor is None:
        # What DataFast's script does in a real browser: record a pageview, set the cookie.
        import httpx

        async with httpx.AsyncClient(base_url=fake_api_url) as client:
            answer = await client.post("/_fake/pageviews", json={"provider": "datafast"})
        response.set_cookie("datafast_visitor_id", answer.json()["visitor_id"], samesite="lax")
    return response


def signup_metadata(result: dict[str, Any], body: Signup) -> dict[str, str]:
    return {"plan": body.plan}


@app.post("/api/signup", status_code=201)
@track_goal("signup", metadata=signup_metadata)
async def signup(body: Signup) -> dict[str, Any]:
    if "@" not in body.email:
        raise HTTPException(status_code=422, detail="that is not an email address")
    return {"welcome": body.email, "plan": body.plan}


@app.post("/api/checkout")
async def checkout(body: Checkout, goals: GoalTrackerDep) -> dict[str, Any]:
    if body.plan not in PRICES:
        raise HTTPException(status_code=404, detail="no such plan")
    total = PRICES[body.plan] * body.seats
    queued = goals.track("checkout", {"plan": body.plan, "seats": body.seats, "total": total})
    return {"total": total, "goal_queued": queued}


@app.get("/demo")
async def demo() -> dict[str, Any]:
    """Where the demo's fake API is (null when tracking for real)."""
    return {"fake_api_url": fake_api_url}
