"""Settings for the Django adapter tests (sqlite in memory; goals go nowhere by default).

Tests point goaltrack at the fake API with ``settings.GOALTRACK = ...``; a server subprocess
does it with the ``GOALTRACK_TEST_API_URL`` / ``GOALTRACK_TEST_MODE`` environment variables.
"""

from __future__ import annotations

import os

SECRET_KEY = "goaltrack-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "tests.support.django_app.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "goaltrack.django",
    "tests.support.django_app",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "goaltrack.django.middleware.GoalTrackMiddleware",
]

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast tests

GOALTRACK = {
    "API_KEY": "df_goaltrack_tests_key",
    "PROVIDER": "datafast",
    "API_URL": os.environ.get("GOALTRACK_TEST_API_URL"),
    "MODE": os.environ.get("GOALTRACK_TEST_MODE", "disabled"),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"goaltrack": {"level": "DEBUG", "propagate": True}},
}
