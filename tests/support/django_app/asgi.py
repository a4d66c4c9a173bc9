"""ASGI entry point for running the test project under uvicorn."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.django_app.settings")
application = get_asgi_application()
