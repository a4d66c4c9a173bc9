"""A model to track goals from (post_save) and to roll back (on_commit tests)."""

from __future__ import annotations

from django.db import models


class Signup(models.Model):
    email = models.EmailField(unique=True)
    plan = models.CharField(max_length=20, default="free")

    def __str__(self) -> str:
        return self.email
