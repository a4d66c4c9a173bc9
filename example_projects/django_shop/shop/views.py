"""The shop's pages, each showing one way of tracking a goal with goaltrack.

- ``signup``: the helper, ``track_goal(request, "signup", {...})``, called once the new account
  is committed (``transaction.on_commit``): a rolled-back signup is never counted, and nothing
  about the goal can touch the account once it is saved;
- ``newsletter``: the decorator on an async function view (POST only);
- ``PricingView``: a form page (GET shows it, a POST with errors shows it again with 200, a
  valid POST redirects): the decorator on its ``post`` with ``when=`` counting the redirect, so
  one goal per purchase; metadata from the request;
- login: ``connect_goal(user_logged_in, "login", metadata=lambda user, request: ...)`` in
  ``apps.py``, the callable taking the signal's arguments by name.
"""

from __future__ import annotations

from django.contrib.auth import login
from django.contrib.auth.mixins import LoginRequiredMixin
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.views import View

from goaltrack.django import track_goal
from shop.forms import PurchaseForm, SignupForm
from shop.models import PLANS, Customer, Purchase


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "shop/home.html", {"plans": PLANS})


def signup(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            customer = form.save()
            referral = customer.referral or "none"
            transaction.on_commit(lambda: track_goal(request, "signup", {"referral": referral}))
        login(request, customer.user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("pricing")
    status = 400 if request.method == "POST" else 200
    return render(request, "shop/signup.html", {"form": form}, status=status)


@track_goal("newsletter", metadata={"source": "footer"})
async def newsletter(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])  # 405: no goal
    return redirect("home")


def purchase_metadata(request: HttpRequest) -> dict[str, object]:
    plan = request.POST.get("plan", "")
    return {"plan": plan, "amount": PLANS.get(plan)}


class PricingView(LoginRequiredMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, "shop/pricing.html", {"plans": PLANS, "form": PurchaseForm()})

    @method_decorator(
        track_goal(
            "purchase",
            metadata=purchase_metadata,
            # The redirect after a valid POST: not the form shown again with its errors (200).
            when=lambda response: response.status_code == 302,
        )
    )
    def post(self, request: HttpRequest) -> HttpResponse:
        form = PurchaseForm(request.POST)
        if not form.is_valid():  # the form again, with its errors: no goal
            return render(request, "shop/pricing.html", {"plans": PLANS, "form": form})
        customer = Customer.objects.get(user=request.user)  # type: ignore[misc]
        Purchase.objects.create(
            customer=customer, plan=form.cleaned_data["plan"], amount=form.amount()
        )
        return HttpResponseRedirect("/thanks/")


def thanks(request: HttpRequest) -> HttpResponse:
    return render(request, "shop/thanks.html")
