"""A Django project of Django REST framework views and django-ninja operations that track goals,
for ``tests/django/test_drf.py`` and ``tests/django/test_ninja.py`` (under gunicorn and uvicorn).
"""
