"""The apps of bench/e2e_delivery.py, one goal or event per request (not a benchmark).

``python -m gunicorn 'bench._e2e_apps:django_app()'`` or ``python -m uvicorn --factory
bench._e2e_apps:fastapi_app``, run from the repository root, with the environment:

- ``E2E_API_URL``: the fake API, where goaltrack delivers;
- ``E2E_SINK_URL``: the stand-in ingestion API (``bench/_sink.py``) for segment and posthog;
- ``E2E_DELIVERY``: ``courier`` (goaltrack's default options) or ``threads``
  (``delivery_process=False``: delivery from worker threads in the web process).

Each app has goaltrack's middleware (as a real app would) and these GET routes:
``/`` answers "ok" and tracks nothing; ``/goal`` tracks one goal through the adapter's
``track_goal(request, ...)``; ``/segment`` sends one event through segment's SDK
(``Client.track``), ``/posthog`` one through posthog's (``Posthog.capture``), each with its
default background consumer and batching. The visitor is the request's ``datafast_visitor_id``
cookie. A route answers 500 when the goal or event was not accepted, so the load generator
counts it as an error.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations (Request)
# at runtime, and Request is imported inside fastapi_app().
import os
from typing import Any

from bench._apps import API_KEY

METADATA = {"plan": "pro", "source": "bench"}
SEGMENT_WRITE_KEY = "bench-write-key"
POSTHOG_API_KEY = "phc_bench_project_key"


def _delivery_options() -> dict[str, Any]:
    delivery = os.environ.get("E2E_DELIVERY", "courier")
    if delivery not in ("courier", "threads"):
        raise ValueError(f"E2E_DELIVERY must be courier or threads, not {delivery!r}")
    return {} if delivery == "courier" else {"delivery_process": False}


class _Sdks:
    """segment's and posthog's clients, built in the worker process (after gunicorn's fork)."""

    def __init__(self) -> None:
        from posthog import Posthog
        from segment.analytics import Client

        sink = os.environ["E2E_SINK_URL"]
        self.segment = Client(SEGMENT_WRITE_KEY, host=f"{sink}/segment")
        self.posthog = Posthog(POSTHOG_API_KEY, host=f"{sink}/posthog")

    def segment_event(self, visitor_id: str) -> bool:
        accepted, _ = self.segment.track(
            anonymous_id=visitor_id, event="signup", properties=METADATA
        )
        return bool(accepted)

    def posthog_event(self, visitor_id: str) -> bool:
        return (
            self.posthog.capture("signup", distinct_id=visitor_id, properties=METADATA) is not None
        )


# ---- Django (gunicorn) ------------------------------------------------------------------------

_django_sdks: _Sdks | None = None


def django_app() -> Any:
    global _django_sdks
    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    goaltrack = {"API_KEY": API_KEY, "API_URL": os.environ["E2E_API_URL"]}
    goaltrack.update({key.upper(): value for key, value in _delivery_options().items()})
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["goaltrack.django"],
        MIDDLEWARE=["goaltrack.django.middleware.GoalTrackMiddleware"],
        DATABASES={},
        LOGGING_CONFIG=None,
        GOALTRACK=goaltrack,
    )
    django.setup()
    _django_sdks = _Sdks()
    return get_wsgi_application()


def _django_answer(accepted: bool) -> Any:
    from django.http import HttpResponse

    return HttpResponse("ok" if accepted else "not accepted", status=200 if accepted else 500)


def django_trivial(request: Any) -> Any:
    return _django_answer(True)


def django_goal(request: Any) -> Any:
    from goaltrack.django import track_goal

    return _django_answer(track_goal(request, "signup", METADATA))


def django_segment(request: Any) -> Any:
    assert _django_sdks is not None
    return _django_answer(_django_sdks.segment_event(request.COOKIES["datafast_visitor_id"]))


def django_posthog(request: Any) -> Any:
    assert _django_sdks is not None
    return _django_answer(_django_sdks.posthog_event(request.COOKIES["datafast_visitor_id"]))


def __getattr__(name: str) -> Any:
    # ROOT_URLCONF is this module; its urlpatterns can only be built once Django is set up.
    if name == "urlpatterns":
        from django.urls import path

        return [
            path("", django_trivial),
            path("goal", django_goal),
            path("segment", django_segment),
            path("posthog", django_posthog),
        ]
    raise AttributeError(name)


# ---- FastAPI (uvicorn) ------------------------------------------------------------------------


def fastapi_app() -> Any:
    from fastapi import FastAPI, Request
    from fastapi.responses import PlainTextResponse
    from starlette.middleware import Middleware

    from goaltrack.fastapi import GoalTrackMiddleware, track_goal

    options = {"api_key": API_KEY, "api_url": os.environ["E2E_API_URL"], **_delivery_options()}
    app = FastAPI(middleware=[Middleware(GoalTrackMiddleware, **options)], openapi_url=None)
    sdks = _Sdks()

    def answer(accepted: bool) -> PlainTextResponse:
        return PlainTextResponse("ok" if accepted else "not accepted", 200 if accepted else 500)

    @app.get("/")
    async def trivial() -> PlainTextResponse:
        return answer(True)

    @app.get("/goal")
    async def goal(request: Request) -> PlainTextResponse:
        return answer(track_goal(request, "signup", METADATA))

    @app.get("/segment")
    async def segment(request: Request) -> PlainTextResponse:
        return answer(sdks.segment_event(request.cookies["datafast_visitor_id"]))

    @app.get("/posthog")
    async def posthog(request: Request) -> PlainTextResponse:
        return answer(sdks.posthog_event(request.cookies["datafast_visitor_id"]))

    return app
