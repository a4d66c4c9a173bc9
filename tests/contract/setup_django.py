"""Django settings and URLs of the setup-error tests (``DJANGO_SETTINGS_MODULE`` and
``ROOT_URLCONF``): goaltrack configured by the ``GOALTRACK_*`` environment variables, the
routes of :mod:`tests.contract.setup_apps`. Served by
``gunicorn 'django.core.wsgi:get_wsgi_application()'``. Not a test module.
"""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from goaltrack.django import track_goal
from tests.contract.setup_apps import _outcome

SECRET_KEY = "goaltrack-setup-tests-not-secret"
DEBUG = os.environ.get("SETUP_DEBUG") == "1"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = __name__
INSTALLED_APPS = ["goaltrack.django"]
MIDDLEWARE = ["goaltrack.django.middleware.GoalTrackMiddleware"]
DATABASES: dict[str, object] = {}
USE_TZ = True
GOALTRACK = {"PROVIDER": "datafast"}  # the key, URL and outbox: GOALTRACK_* variables


def plain(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


@csrf_exempt
def track(request: HttpRequest) -> HttpResponse:
    return JsonResponse(_outcome(lambda: track_goal(request, "signup", {"plan": "pro"})))


urlpatterns = [path("plain", plain), path("track", track)]
