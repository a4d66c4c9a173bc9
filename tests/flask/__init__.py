"""Tests of goaltrack.flask."""
