"""WSGI entry point for running the test project under gunicorn."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.django_app.settings")
application = get_wsgi_application()
