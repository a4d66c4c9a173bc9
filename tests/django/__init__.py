"""Tests of goaltrack.django."""
