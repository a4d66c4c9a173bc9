"""The app in Django: the settings (the test project's, with these URLs) and the views.

``DJANGO_SETTINGS_MODULE`` is this module; the handlers are in ``django_handlers``.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path

from goaltrack.django import track_goal
from tests.support.apps.serverless import GOAL, goal_metadata
from tests.support.django_app.settings import *  # noqa: F403

ROOT_URLCONF = __name__


def home(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def track(request: HttpRequest) -> JsonResponse:
    goals = int(request.GET.get("goals", "1"))
    for n in range(goals):
        track_goal(request, GOAL, goal_metadata(request.GET.get("invocation", ""), n))
    return JsonResponse({"tracked": goals})


urlpatterns = [path("", home), path("track", track)]
