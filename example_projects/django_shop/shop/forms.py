"""The signup form: a user and their customer profile."""

from __future__ import annotations

from django import forms
from django.contrib.auth.models import User

from shop.models import PLANS, Customer


class SignupForm(forms.ModelForm):  # type: ignore[type-arg]
    email = forms.EmailField()
    password = forms.CharField(widget=forms.PasswordInput, min_length=8)

    class Meta:
        model = Customer
        fields = ["company", "referral"]

    def clean_email(self) -> str:
        email: str = self.cleaned_data["email"].lower()
        if User.objects.filter(username=email).exists():
            raise forms.ValidationError("An account with this email already exists.")
        return email

    def save(self, commit: bool = True) -> Customer:
        user = User.objects.create_user(
            self.cleaned_data["email"], self.cleaned_data["email"], self.cleaned_data["password"]
        )
        customer: Customer = super().save(commit=False)
        customer.user = user
        customer.save()
        return customer


class PurchaseForm(forms.Form):
    plan = forms.ChoiceField(choices=[(p, p.title()) for p in PLANS])

    def amount(self) -> int:
        return PLANS[self.cleaned_data["plan"]]
