"""A customer and what they bought."""

from __future__ import annotations

from django.conf import settings
from django.db import models

PLANS = {"starter": 9, "pro": 29, "team": 99}


class Customer(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    company = models.CharField(max_length=100, blank=True)
    referral = models.CharField(max_length=50, blank=True)

    def __str__(self) -> str:
        return str(self.user)


class Purchase(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="purchases")
    plan = models.CharField(max_length=20, choices=[(p, p.title()) for p in PLANS])
    amount = models.PositiveIntegerField()
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.plan} for {self.customer}"
