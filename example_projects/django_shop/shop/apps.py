"""The shop app; turns Django's login signal into a goal with connect_goal."""

from __future__ import annotations

from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from goaltrack.django import connect_goal

        connect_goal(user_logged_in, "login", dispatch_uid="shop.login_goal")
