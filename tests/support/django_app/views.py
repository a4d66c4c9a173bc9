"""Views covering every way of tracking a goal: helper, decorator, class-based, sync and async."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from django.contrib.auth import authenticate, login
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from goaltrack.django import current_visitor, track_goal
from tests.support.django_app.models import Signup


def _status(request: HttpRequest) -> int:
    return int(request.GET.get("status", "200"))


def helper(request: HttpRequest) -> HttpResponse:
    queued = track_goal(request, "signup", {"plan": request.GET.get("plan", "free")})
    return JsonResponse({"queued": queued})


async def helper_async(request: HttpRequest) -> HttpResponse:
    queued = track_goal(request, "signup", {"plan": request.GET.get("plan", "free")})
    return JsonResponse({"queued": queued})


def helper_bad_name(request: HttpRequest) -> HttpResponse:
    track_goal(request, request.GET["name"])
    return HttpResponse("tracked")


def purchase_metadata(request: HttpRequest, response: HttpResponse) -> dict[str, Any]:
    return {"plan": request.GET.get("plan", "free"), "status": response.status_code}


@track_goal("purchase", metadata=purchase_metadata)
def decorated(request: HttpRequest) -> HttpResponse:
    return HttpResponse("bought", status=_status(request))


@csrf_exempt
@track_goal("webhook_outer")
def csrf_exempt_outer(request: HttpRequest) -> HttpResponse:
    return HttpResponse("received")


@track_goal("webhook_inner")
@csrf_exempt
def csrf_exempt_inner(request: HttpRequest) -> HttpResponse:
    return HttpResponse("received")


@track_goal("purchase", metadata=purchase_metadata)
async def decorated_async(request: HttpRequest) -> HttpResponse:
    return HttpResponse("bought", status=_status(request))


@track_goal("purchase")
def decorated_raises(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the view failed")


@track_goal("newsletter", metadata={"source": "footer"})
def decorated_literal_metadata(request: HttpRequest) -> HttpResponse:
    return HttpResponse("subscribed")


@track_goal("checkout", metadata=lambda request, response: {"Not A Key": 1})
def decorated_bad_metadata(request: HttpRequest) -> HttpResponse:
    return HttpResponse("still fine")


@track_goal("description_goal", description="from a decorator")
def decorated_description(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


class MethodDecoratedView(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("form")

    @method_decorator(track_goal("cbv_post"))
    def post(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("posted", status=_status(request))


@method_decorator(track_goal("cbv_dispatch"), name="dispatch")
class DispatchDecoratedView(View):
    def post(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("posted", status=_status(request))


class DirectDispatchView(View):
    @track_goal("cbv_direct")
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return super().dispatch(request, *args, **kwargs)

    def post(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("posted", status=_status(request))


@track_goal("cbv_class")
class ClassDecoratedView(View):
    def post(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("posted", status=_status(request))


class AsyncMethodDecoratedView(View):
    @method_decorator(track_goal("cbv_async_post"))
    async def post(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("posted", status=_status(request))


@track_goal("cbv_async_class")
class AsyncClassDecoratedView(View):
    async def post(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse("posted", status=_status(request))


def _visitor_payload(request: HttpRequest) -> dict[str, Any]:
    visitor = current_visitor()
    state = getattr(request, "goaltrack", None)
    return {
        "current": visitor.visitor_id if visitor else None,
        "request": state.visitor.visitor_id if state and state.visitor else None,
        "is_bot": state.is_bot if state else None,
    }


def visitor(request: HttpRequest) -> HttpResponse:
    return JsonResponse(_visitor_payload(request))


async def visitor_async(request: HttpRequest) -> HttpResponse:
    return JsonResponse(_visitor_payload(request))


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[str]:
        for index in range(2):
            visitor = current_visitor()
            yield f"{index}:{visitor.visitor_id if visitor else None}\n"

    return StreamingHttpResponse(chunks())


async def stream_async(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks() -> AsyncIterator[str]:
        for index in range(2):
            visitor = current_visitor()
            yield f"{index}:{visitor.visitor_id if visitor else None}\n"

    return StreamingHttpResponse(chunks())


class RollBack(Exception):
    """Raised inside the signup transaction to undo it."""


def signup(request: HttpRequest) -> HttpResponse:
    """Create a Signup and track it at commit; ``?fail=1`` rolls the transaction back."""
    email = request.POST["email"]
    try:
        with transaction.atomic():
            Signup.objects.create(email=email)
            track_goal(request, "signup", {"source": "form"}, on_commit=True)
            if request.POST.get("fail"):
                raise RollBack
    except RollBack:
        return HttpResponse("rolled back", status=409)
    return HttpResponse("created", status=201)


def create_signup(request: HttpRequest) -> HttpResponse:
    """Create a Signup: a post_save receiver connected with connect_goal can track it."""
    Signup.objects.create(email=request.POST["email"], plan=request.POST.get("plan", "free"))
    return HttpResponse("created", status=201)


def login_view(request: HttpRequest) -> HttpResponse:
    """Log in with username and password (django.contrib.auth sends its signals)."""
    user = authenticate(
        request, username=request.POST["username"], password=request.POST["password"]
    )
    if user is None:
        return HttpResponse("wrong credentials", status=401)
    login(request, user)
    return HttpResponse("welcome", status=302, headers={"Location": "/"})
