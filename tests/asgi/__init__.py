"""Tests of goaltrack.asgi."""
