"""django-ninja operations tracking goals: the decorator under ``@api.post`` (metadata from the
operation's ``payload``; an async operation; a ``(400, data)`` answer and an ``HttpError`` that
track nothing) and ``track_goal(request, ...)`` inside one."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import NinjaAPI, Schema
from ninja.errors import HttpError

from goaltrack.django import track_goal

api = NinjaAPI(urls_namespace="ninja")


class SignupIn(Schema):
    plan: str


@api.post("/signup", response={201: dict})
@track_goal("signup", metadata=lambda request, response, payload: {"plan": payload.plan})
def signup(request: HttpRequest, payload: SignupIn) -> tuple[int, dict[str, str]]:
    return 201, {"plan": payload.plan}


@api.post("/subscribe")
def subscribe(request: HttpRequest) -> dict[str, bool]:
    return {"queued": track_goal(request, "newsletter_subscribe", {"list": "weekly"})}


@api.post("/checkout", response={200: dict, 400: dict})
@track_goal("purchase", metadata=lambda request, response, plan: {"plan": plan})
async def checkout(request: HttpRequest, plan: str) -> tuple[int, dict[str, str]]:
    if plan not in ("pro", "team"):
        return 400, {"plan": "unknown plan"}
    return 200, {"plan": plan}


@api.post("/conflict")
@track_goal("never_tracked")
def conflict(request: HttpRequest) -> dict[str, str]:
    raise HttpError(409, "already exists")
