"""Settings of the example shop.

Goals go to the bundled fake API by default: start it with ``python -m goaltrack.testing``
(it listens on http://127.0.0.1:8765) and see them at http://127.0.0.1:8765/_fake/. Point the
shop at a real account with ``GOALTRACK_API_KEY`` / ``GOALTRACK_API_URL`` / ``GOALTRACK_PROVIDER``.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "example-shop-not-a-secret")
DEBUG = os.environ.get("SHOP_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "goaltrack.django",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "goaltrack.django.middleware.GoalTrackMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB_PATH", str(BASE_DIR / "db.sqlite3")),
    }
}

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/pricing/"

FAKE_API_URL = "http://127.0.0.1:8765"
PROVIDER = os.environ.get("GOALTRACK_PROVIDER", "datafast")

GOALTRACK = {
    "API_KEY": os.environ.get("GOALTRACK_API_KEY", "df_example_shop_key"),
    "PROVIDER": PROVIDER,
    "API_URL": os.environ.get("GOALTRACK_API_URL", f"{FAKE_API_URL}/{PROVIDER}"),
    "WEBSITE_ID": os.environ.get("GOALTRACK_WEBSITE_ID") or None,
    # The script tag's website id ({% goaltrack_script %} in base.html); while goals go to the
    # fake API, the tag loads its stand-in script instead of the provider's.
    "TRACKING_ID": os.environ.get("GOALTRACK_TRACKING_ID", "dfid_example_shop"),
    "ON_COMMIT": True,  # a signup rolled back is not counted
    # GOALTRACK_SCRIPT_PROXY=1 serves the script and its events from the shop itself
    # (/_goaltrack/...), past blockers of the provider's host; the environment fills it in.
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"goaltrack": {"handlers": ["console"], "level": "INFO"}},
}
