"""Tests of goaltrack.transports."""
