"""Settings of the API project: goaltrack's app and middleware, DRF, goals to ``GOALTRACK_*``."""

from __future__ import annotations

SECRET_KEY = "goaltrack-api-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "tests.support.apps.django_apis.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "goaltrack.django",
]
MIDDLEWARE = ["goaltrack.django.middleware.GoalTrackMiddleware"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

# Anonymous API clients: no session, so no CSRF check and no database.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}

# The account comes from the GOALTRACK_* variables.
GOALTRACK = {"MODE": "background", "BACKOFF_BASE": 0.05}
