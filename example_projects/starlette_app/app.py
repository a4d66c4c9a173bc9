"""The smallest Starlette app recording a goal with goaltrack.

    GOALTRACK_API_KEY=df_... uvicorn app:app

The middleware takes no arguments here, so it uses the process-wide tracker configured from the
``GOALTRACK_*`` environment variables (without a key it validates goals and sends nothing).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from goaltrack.asgi import GoalTrackMiddleware, track_goal


async def signup(request: Request) -> JSONResponse:
    queued = track_goal(request, "signup", {"plan": request.query_params.get("plan", "free")})
    return JSONResponse({"goal_queued": queued})


@track_goal("newsletter")
async def newsletter(request: Request) -> JSONResponse:
    return JSONResponse({"subscribed": True})


app = Starlette(
    routes=[
        Route("/signup", signup, methods=["POST"]),
        Route("/newsletter", newsletter, methods=["POST"]),
    ],
    middleware=[Middleware(GoalTrackMiddleware)],
)
