"""Trivial apps for the end-to-end benchmarks, with and without goaltrack (not a benchmark).

Each factory builds one app in the server process: ``python -m uvicorn --factory
bench._apps:starlette_tracked`` or ``python -m gunicorn 'bench._apps:flask_plain()'``, run from
the repository root. The two variants of a pair differ only by goaltrack: its middleware (or
extension) in front of the same endpoint, with a real background tracker pointed at a loopback
port nothing listens on. The endpoint tracks no goal, so nothing is ever sent: what is measured
is what goaltrack adds to every request.
"""

from __future__ import annotations

from typing import Any

API_KEY = "df_bench_0123456789abcdef"
API_URL = "http://127.0.0.1:9"
"""The discard port: nothing listens there, and nothing is sent anyway."""

# ---- ASGI (uvicorn) ---------------------------------------------------------------------------


def _starlette(tracked: bool) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from goaltrack.asgi import GoalTrackMiddleware

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    middleware = [Middleware(GoalTrackMiddleware, api_key=API_KEY, api_url=API_URL)]
    return Starlette(routes=[Route("/", hello)], middleware=middleware if tracked else [])


def _fastapi(tracked: bool) -> Any:
    from fastapi import FastAPI
    from starlette.middleware import Middleware

    from goaltrack.asgi import GoalTrackMiddleware

    middleware = [Middleware(GoalTrackMiddleware, api_key=API_KEY, api_url=API_URL)]
    app = FastAPI(middleware=middleware if tracked else [], openapi_url=None)

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"hello": "world"}

    return app


def starlette_plain() -> Any:
    return _starlette(tracked=False)


def starlette_tracked() -> Any:
    return _starlette(tracked=True)


def fastapi_plain() -> Any:
    return _fastapi(tracked=False)


def fastapi_tracked() -> Any:
    return _fastapi(tracked=True)


# ---- Flask (gunicorn) ------------------------------------------------------------------------


def _flask(tracked: bool) -> Any:
    from flask import Flask

    from goaltrack.flask import GoalTrack

    app = Flask(__name__)
    if tracked:
        app.config["GOALTRACK_API_KEY"] = API_KEY
        app.config["GOALTRACK_API_URL"] = API_URL
        GoalTrack(app)

    @app.get("/")
    def index() -> str:
        return "ok"

    return app


def flask_plain() -> Any:
    return _flask(tracked=False)


def flask_tracked() -> Any:
    return _flask(tracked=True)


# ---- Django (gunicorn) ------------------------------------------------------------------------


def _django(tracked: bool) -> Any:
    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    # The same settings for both but the middleware, as in bench_django.py's bare stack.
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["goaltrack.django"],
        MIDDLEWARE=["goaltrack.django.middleware.GoalTrackMiddleware"] if tracked else [],
        DATABASES={},
        LOGGING_CONFIG=None,
        GOALTRACK={"API_KEY": API_KEY, "API_URL": API_URL},
    )
    django.setup()
    return get_wsgi_application()


def django_plain() -> Any:
    return _django(tracked=False)


def django_tracked() -> Any:
    return _django(tracked=True)


def trivial_view(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse("ok")


def __getattr__(name: str) -> Any:
    # ROOT_URLCONF is this module; its urlpatterns can only be built once Django is set up.
    if name == "urlpatterns":
        from django.urls import path

        return [path("", trivial_view)]
    raise AttributeError(name)
