"""The app in Flask with ``GoalTrack(app)``; ``handler``: under apig-wsgi on Lambda."""

from __future__ import annotations

from apig_wsgi import make_lambda_handler
from flask import Flask, request

from goaltrack.flask import GoalTrack, track_goal
from tests.support.apps.serverless import GOAL, goal_metadata

app = Flask(__name__)
GoalTrack(app)


@app.get("/")
def home() -> dict[str, bool]:
    return {"ok": True}


@app.get("/track")
def track() -> dict[str, int]:
    goals = int(request.args.get("goals", "1"))
    for n in range(goals):
        track_goal(request, GOAL, goal_metadata(request.args.get("invocation", ""), n))
    return {"tracked": goals}


handler = make_lambda_handler(app)
