"""A small Django project for the Django adapter tests."""
