"""The app in FastAPI behind ``GoalTrackMiddleware``; ``handler``: under Mangum on Lambda."""

from __future__ import annotations

from fastapi import FastAPI, Request
from mangum import Mangum

from goaltrack.asgi import GoalTrackMiddleware, track_goal
from tests.support.apps.serverless import GOAL, goal_metadata

app = FastAPI()
app.add_middleware(GoalTrackMiddleware)  # the process-wide tracker, from GOALTRACK_*


@app.get("/")
async def home() -> dict[str, bool]:
    return {"ok": True}


@app.get("/track")
async def track(request: Request, goals: int = 1, invocation: str = "") -> dict[str, int]:
    for n in range(goals):
        track_goal(request, GOAL, goal_metadata(invocation, n))
    return {"tracked": goals}


# lifespan="off": the request's own flush is under test, not Mangum's per-invocation lifespan.
handler = Mangum(app, lifespan="off")
