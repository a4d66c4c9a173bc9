"""A stand-in for the analytics provider's JavaScript snippet, for trying the shop locally.

On a real site the provider's script sets the visitor cookie and records the pageview. Here,
while the shop talks to goaltrack's fake API, this middleware does both on a visitor's first
request, so that ``runserver`` + a browser produce goals the fake API accepts.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from goaltrack import get_provider


class FakeTrackingScriptMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if not settings.SHOP_FAKE_TRACKING_SCRIPT:
            return self.get_response(request)
        provider = get_provider(settings.GOALTRACK["PROVIDER"])
        new_visitor = None
        if provider.visitor_cookie not in request.COOKIES:
            new_visitor = str(uuid.uuid4())
            _record_pageview(provider.name, new_visitor)
            request.COOKIES[provider.visitor_cookie] = new_visitor
        response = self.get_response(request)
        if new_visitor:
            response.set_cookie(provider.visitor_cookie, new_visitor, max_age=365 * 24 * 3600)
        return response


def _record_pageview(provider: str, visitor_id: str) -> None:
    api_url: str = settings.GOALTRACK["API_URL"]
    origin = api_url.rsplit("/", 1)[0]
    body = json.dumps({"provider": provider, "visitor_id": visitor_id}).encode()
    request = urllib.request.Request(  # noqa: S310 - a loopback URL from our own settings
        f"{origin}/_fake/pageviews", body, {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2):  # noqa: S310
            pass
    except OSError:
        pass  # the fake API is not running: goals will be refused, the shop still works
