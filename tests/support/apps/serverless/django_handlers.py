"""The Django app on Lambda: ``wsgi_handler`` under apig-wsgi, ``asgi_handler`` under Mangum."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.apps.serverless.django_project")

from apig_wsgi import make_lambda_handler
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application
from mangum import Mangum

wsgi_handler = make_lambda_handler(get_wsgi_application())
asgi_handler = Mangum(get_asgi_application(), lifespan="off")
