"""The shop app; turns Django's login signal into a goal with connect_goal."""

from __future__ import annotations

from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from goaltrack.django import connect_goal

        # The callable takes the signal's arguments by name (user_logged_in sends sender,
        # request and user); the sender, when wanted, is a parameter named ``sender``.
        connect_goal(
            user_logged_in,
            "login",
            metadata=lambda user, request: {
                "via": "signup" if request.path.startswith("/signup") else "login",
                "staff": user.is_staff,
            },
            dispatch_uid="shop.login_goal",
        )
