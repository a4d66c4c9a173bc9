"""WSGI entry point of the API project (gunicorn)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.apps.django_apis.settings")
application = get_wsgi_application()
