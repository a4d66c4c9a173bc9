"""A visitor's browser: the User-Agents and the clients the tests send requests with."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from django.test import AsyncClient, Client

#: A desktop browser's User-Agent: goaltrack skips known bots, and headless Chromium's own UA
#: names itself "HeadlessChrome".
BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
VISITOR_COOKIE = "datafast_visitor_id"


def http_browser(
    base_url: str,
    visitor_id: str | None,
    user_agent: str = BROWSER_UA,
    cookie: str = VISITOR_COOKIE,
) -> httpx.Client:
    """An httpx client for a served app, carrying the visitor's cookie (none when None)."""
    cookies = {cookie: visitor_id} if visitor_id else {}
    return httpx.Client(
        base_url=base_url, headers={"User-Agent": user_agent}, cookies=cookies, timeout=10
    )


def django_browser(visitor_id: str | None, user_agent: str = BROWSER_UA) -> Client:
    """Django's test client as that visitor's browser."""
    from django.test import Client

    client = Client(HTTP_USER_AGENT=user_agent)
    if visitor_id:
        client.cookies[VISITOR_COOKIE] = visitor_id
    return client


def django_async_browser(visitor_id: str | None, user_agent: str = BROWSER_UA) -> AsyncClient:
    """Django's async test client as that visitor's browser."""
    from django.test import AsyncClient

    client = AsyncClient(HTTP_USER_AGENT=user_agent)
    if visitor_id:
        client.cookies[VISITOR_COOKIE] = visitor_id
    return client
