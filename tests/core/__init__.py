"""Tests of the framework-free core: goaltrack/*.py."""
