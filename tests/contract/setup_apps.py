"""The apps of the setup-error tests, one per adapter, served by real servers in subprocesses.

Each app has the same routes: ``GET /plain`` tracks nothing; ``POST /track`` tracks ``signup``
for the visitor in the cookie and answers ``{"queued": bool}``, or ``{"raised": <exception
name>, "message": ...}`` when tracking raised; the ASGI apps also have ``GET /started``: whether
the app's own lifespan startup ran (where a real app creates its tables), and FastAPI has its
``/docs``. goaltrack is configured from the ``GOALTRACK_*`` environment variables (the key, the
URL, the outbox); ``SETUP_DEBUG=1`` is the framework's development mode (the ASGI middleware's
``debug=True``, Django's ``DEBUG``, Flask's debug). Django's settings and URLs are
``tests.contract.setup_django``. Not a test module.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.requests import Request

from goaltrack import InvalidConfiguration, InvalidGoal

DEBUG = os.environ.get("SETUP_DEBUG") == "1"


def _outcome(track: Any) -> dict[str, Any]:
    try:
        return {"queued": track()}
    except (InvalidConfiguration, InvalidGoal) as exc:
        return {"raised": type(exc).__name__, "message": str(exc)}


def fastapi_app() -> Any:
    """FastAPI with ``app.add_middleware(GoalTrackMiddleware, provider="datafast")``."""
    # Request is module-level: FastAPI resolves the endpoints' annotations (strings here) in
    # the module's namespace.
    from fastapi import FastAPI

    from goaltrack.asgi import GoalTrackMiddleware, track_goal

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.started = True
        yield

    app = FastAPI(lifespan=lifespan)
    app.state.started = False
    app.add_middleware(GoalTrackMiddleware, provider="datafast", debug=DEBUG)

    @app.get("/plain")
    async def plain() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/started")
    async def started() -> dict[str, bool]:
        return {"started": app.state.started}

    @app.post("/track")
    async def track(request: Request) -> dict[str, Any]:
        return _outcome(lambda: track_goal(request, "signup", {"plan": "pro"}))

    return app


def starlette_app() -> Any:
    """Starlette wrapped in ``GoalTrackMiddleware(app)``: the process-wide tracker
    (``goaltrack.get_tracker()``, from the environment); with ``debug=True`` its own."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from goaltrack.asgi import GoalTrackMiddleware, track_goal

    state = {"started": False}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["started"] = True
        yield

    async def plain(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def started(request: Request) -> JSONResponse:
        return JSONResponse(state)

    async def track(request: Request) -> JSONResponse:
        return JSONResponse(_outcome(lambda: track_goal(request, "signup", {"plan": "pro"})))

    routes = [
        Route("/plain", plain),
        Route("/started", started),
        Route("/track", track, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    return GoalTrackMiddleware(app, debug=True) if DEBUG else GoalTrackMiddleware(app)


def flask_app() -> Any:
    """Flask with ``GoalTrack(app)``; the config is the environment's (nothing copied)."""
    from flask import Flask, jsonify, request

    from goaltrack.flask import GoalTrack, track_goal

    app = Flask("setup_errors")
    GoalTrack(app)

    @app.get("/plain")
    def plain() -> Any:
        return jsonify(ok=True)

    @app.post("/track")
    def track() -> Any:
        return jsonify(_outcome(lambda: track_goal(request, "signup", {"plan": "pro"})))

    return app
