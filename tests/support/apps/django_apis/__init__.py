"""A Django project of Django REST framework views and django-ninja operations that track goals,
for ``tests/test_drf.py`` and ``tests/test_ninja.py`` (served by gunicorn and uvicorn)."""
