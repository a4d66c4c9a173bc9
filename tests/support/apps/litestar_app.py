"""A Litestar app as a plain ASGI app inside ``GoalTrackMiddleware`` (for uvicorn).

- ``POST /signup``: ``track_goal(request, ...)`` with Litestar's ``Request``;
- ``POST /purchase``: ``@track_goal`` under ``@post``, metadata from the handler's ``data``;
  an unknown plan raises ``HTTPException`` (400) and tracks nothing;
- ``POST /refund``: answers a ``Response`` with status 409: nothing tracked;
- ``GET /``: answers without tracking.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import HTTPException

from goaltrack.asgi import GoalTrackMiddleware, track_goal


@get("/")
async def home() -> str:
    return "ok"


@post("/signup")
async def signup(request: Request[Any, Any, Any], data: dict[str, str]) -> dict[str, bool]:
    return {"queued": track_goal(request, "signup", {"plan": data.get("plan", "free")})}


@post("/purchase")
@track_goal("purchase", metadata=lambda result, data: {"plan": data["plan"]})
async def purchase(data: dict[str, str]) -> dict[str, str]:
    if data.get("plan") not in ("pro", "team"):
        raise HTTPException(status_code=400, detail="unknown plan")
    return {"plan": data["plan"]}


@post("/refund")
@track_goal("refund")
async def refund() -> Response[str]:
    return Response("already refunded", status_code=409)


application = GoalTrackMiddleware(
    Litestar(route_handlers=[home, signup, purchase, refund]), mode="background"
)
