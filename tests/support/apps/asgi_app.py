"""A Starlette app behind ``GoalTrackMiddleware``, for Hypercorn and Daphne.

``GET /track?id=N`` tracks one ``purchase`` goal with ``track_goal(request, ...)`` for the
visitor in the request's cookie; ``GET /`` answers without tracking. The middleware builds its
tracker from the ``GOALTRACK_*`` variables (``mode`` given, so that it has one of its own).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from goaltrack.asgi import GoalTrackMiddleware, track_goal


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def track(request: Request) -> JSONResponse:
    queued = track_goal(request, "purchase", {"id": request.query_params.get("id", "none")})
    return JSONResponse({"queued": queued})


application = GoalTrackMiddleware(
    Starlette(routes=[Route("/", home), Route("/track", track)]), mode="background"
)
