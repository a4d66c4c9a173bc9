"""The Django app: ``INSTALLED_APPS = [..., "goaltrack.django"]``."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.signals import setting_changed

from goaltrack.django.conf import SETTING_NAME

__all__ = ["GoalTrackConfig"]


class GoalTrackConfig(AppConfig):
    name = "goaltrack.django"
    label = "goaltrack"  # the module path ends in "django", a confusing default label
    verbose_name = "goaltrack"

    def ready(self) -> None:
        from goaltrack.django.checks import check_settings
        from goaltrack.django.wiring import configure_from_settings, connect_auth_goals

        checks.register(check_settings)
        setting_changed.connect(_reconfigure, dispatch_uid="goaltrack.setting_changed")
        configure_from_settings()
        connect_auth_goals()


def _reconfigure(*, setting: str, **kwargs: Any) -> None:
    if setting != SETTING_NAME:
        return
    from goaltrack.django.conf import goaltrack_settings
    from goaltrack.django.wiring import configure_from_settings, connect_auth_goals

    goaltrack_settings.reset()
    configure_from_settings()
    connect_auth_goals()
