"""The contract's routes as a Django URLconf (ROOT_URLCONF while a contract test runs)."""

from __future__ import annotations

from django.dispatch import Signal
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from goaltrack import InvalidGoal
from goaltrack.django import connect_goal, track_goal, track_payment
from tests.contract.apps import pay

account_opened = Signal()
when_raises = Signal()
metadata_raises = Signal()
connect_goal(
    account_opened,
    "account_opened",
    when=lambda sender, plan: plan != "skip",
    metadata=lambda sender, plan: {"plan": plan},
)
connect_goal(when_raises, "when_raises", when=lambda sender: 1 / 0)
connect_goal(metadata_raises, "metadata_raises", metadata=lambda sender, **kwargs: kwargs["nope"])
SIGNALS = {"ok": account_opened, "when": when_raises, "metadata": metadata_raises}


def _query(request: HttpRequest, name: str, default: str) -> str:
    return request.GET.get(name, default)


def track(request: HttpRequest) -> HttpResponse:
    metadata = {_query(request, "key", "plan"): _query(request, "plan", "pro")}
    try:
        queued = track_goal(request, _query(request, "name", "signup"), metadata)
    except InvalidGoal:
        return JsonResponse({"raised": "InvalidGoal"})
    return JsonResponse({"queued": queued})


def track_timezone(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"queued": track_goal(request, "signup", timezone="Europe/Paris")})


def track_three(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"queued": [track_goal(request, f"goal_{n}") for n in range(3)]})


@track_goal("purchase", metadata=lambda request, response: {"plan": _query(request, "plan", "pro")})
def decorated(request: HttpRequest) -> HttpResponse:
    return HttpResponse("done", status=int(_query(request, "status", "200")))


@track_goal("purchase")
def decorated_raises(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the view failed")


@track_goal("purchase", metadata=lambda request, response: {"plan": request.POST["missing"]})
def metadata_raises_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("done")


@track_goal("declared", metadata=lambda request: {"plan": _query(request, "plan", "pro")})
def declared(request: HttpRequest) -> HttpResponse:
    return HttpResponse("done")


@track_goal("purchase", timezone="Europe/Paris")
def decorated_timezone(request: HttpRequest) -> HttpResponse:
    return HttpResponse("done")


def send_signal(request: HttpRequest) -> HttpResponse:
    SIGNALS[_query(request, "which", "ok")].send(sender="form", plan=_query(request, "plan", "pro"))
    return HttpResponse("sent")


def payment(request: HttpRequest) -> HttpResponse:
    def track(*args: object, **kwargs: object) -> bool:
        return track_payment(request, *args, **kwargs)

    return JsonResponse(pay(track, request.GET.dict()))


urlpatterns = [
    path("pay", payment),
    path("track", track),
    path("track-timezone", track_timezone),
    path("track-three", track_three),
    path("decorated", decorated),
    path("decorated-raises", decorated_raises),
    path("metadata-raises", metadata_raises_view),
    path("declared", declared),
    path("decorated-timezone", decorated_timezone),
    path("signal", send_signal),
]


# -- conversions: form views and downloads (see tests/contract/apps.py) ------------------------


def _form_answer(request: HttpRequest) -> HttpResponse:
    from django.shortcuts import redirect

    from tests.contract.apps import form_outcome

    status, body = form_outcome(request.method or "GET", request.GET.get("title"))
    return redirect(body) if status == 302 else HttpResponse(body, status=status)


@track_goal("signup", when=lambda response: response.status_code == 302)
def form(request: HttpRequest) -> HttpResponse:
    return _form_answer(request)


@track_goal("signup")
def form_default(request: HttpRequest) -> HttpResponse:
    return _form_answer(request)


@track_goal("download", methods=["GET"])
def download(request: HttpRequest) -> HttpResponse:
    return HttpResponse("the file")


urlpatterns += [
    path("form", form),
    path("form-default", form_default),
    path("download", download),
]
