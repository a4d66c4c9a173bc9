"""Tests of goaltrack.testing: the fake API, its script and the pytest plugin."""
