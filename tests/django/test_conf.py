"""The GOALTRACK setting as requests read it: parsed once, re-read when the setting changes."""

from __future__ import annotations

import pytest
from django.test import override_settings

from goaltrack.django.conf import DEFAULT_AUTH_GOALS, DEFAULT_FLUSH_TIMEOUT, goaltrack_settings


def test_defaults() -> None:
    with override_settings(GOALTRACK={}):
        assert goaltrack_settings.on_commit is False
        assert goaltrack_settings.skip_bots is True
        assert goaltrack_settings.flush_at_request_end is None
        assert goaltrack_settings.auth_goals == {}


def test_request_time_values_follow_override_settings() -> None:
    setting = {"ON_COMMIT": True, "SKIP_BOTS": False, "FLUSH_AT_REQUEST_END": True}
    with override_settings(GOALTRACK={**setting, "AUTH_GOALS": True}):
        assert goaltrack_settings.on_commit is True
        assert goaltrack_settings.skip_bots is False
        assert goaltrack_settings.flush_at_request_end == DEFAULT_FLUSH_TIMEOUT
        assert goaltrack_settings.auth_goals == DEFAULT_AUTH_GOALS
        with override_settings(GOALTRACK={"FLUSH_AT_REQUEST_END": "soon"}):
            assert goaltrack_settings.flush_at_request_end is None  # bad values: E101, not 500s
            assert goaltrack_settings.on_commit is False
        assert goaltrack_settings.flush_at_request_end == DEFAULT_FLUSH_TIMEOUT
    assert goaltrack_settings.skip_bots is True


def test_a_setting_that_is_not_a_mapping_reads_as_empty() -> None:
    with override_settings(GOALTRACK="yes"):
        assert goaltrack_settings.skip_bots is True
        assert goaltrack_settings.raw == {}


def test_unknown_attributes_raise() -> None:
    with pytest.raises(AttributeError, match="no attribute 'skip_robots'"):
        goaltrack_settings.skip_robots  # noqa: B018
