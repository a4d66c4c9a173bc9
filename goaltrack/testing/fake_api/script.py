"""The fake providers' tracking script, ``GET [/<provider>]/js/script.js``.

This module owns the JavaScript the fake serves and the cookies it sets: like the providers' own
script, it sets the visitor and session cookies on the page's origin (DataFast's and Faurya's
names with UUID ids, Flowsery's ``_fs_vid`` / ``_fs_sid`` with url-safe tokens) and records a
pageview with a cross-origin ``POST [/<provider>]/api/events`` (or to the tag's
``data-api-url``, a first-party proxy, as the providers' scripts do), which the app answers with
CORS headers and registers as the visitor's pageview.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from goaltrack.testing.fake_api.rules import check_provider

__all__ = ["EVENTS_PATH", "SCRIPT_PATH", "check_script_id", "tracking_script"]

SCRIPT_PATH = "/js/script.js"
EVENTS_PATH = "/api/events"
VISITOR_COOKIE_MAX_AGE_S = 365 * 24 * 3600
SESSION_COOKIE_MAX_AGE_S = 30 * 60
_SCRIPT_ID_MAX = 128


@dataclass(frozen=True)
class _ScriptCookies:
    visitor: str
    session: str
    uuid_ids: (
        bool  # visitor id a UUID v4 and session id "s" + UUID (DataFast); else url-safe tokens
    )


_SCRIPT_COOKIES = {
    "datafast": _ScriptCookies("datafast_visitor_id", "datafast_session_id", uuid_ids=True),
    "faurya": _ScriptCookies("faurya_visitor_id", "faurya_session_id", uuid_ids=True),
    "flowsery": _ScriptCookies("_fs_vid", "_fs_sid", uuid_ids=False),
}

_SCRIPT_TEMPLATE = """\
/* goaltrack fake API: a stand-in for the analytics provider's tracking script. */
(function () {
  "use strict";
  var config = %(config)s;
  function readCookie(name) {
    var pairs = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < pairs.length; i++) {
      var at = pairs[i].indexOf("=");
      if (pairs[i].slice(0, at) === name) return pairs[i].slice(at + 1);
    }
    return null;
  }
  function writeCookie(name, value, maxAge) {
    document.cookie = name + "=" + value + "; path=/; max-age=" + maxAge + "; SameSite=Lax";
  }
  function uuid4() {
    var bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) {
      return (b + 0x100).toString(16).slice(1);
    }).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20),
      hex.slice(20)].join("-");
  }
  function token() { return uuid4().replace(/-/g, ""); }
  var visitorId = readCookie(config.visitorCookie) || (config.uuidIds ? uuid4() : token());
  var sessionId = readCookie(config.sessionCookie) || (config.uuidIds ? "s" + uuid4() : token());
  writeCookie(config.visitorCookie, visitorId, config.visitorMaxAge);
  writeCookie(config.sessionCookie, sessionId, config.sessionMaxAge);
  // As the providers' scripts do, data-api-url on the tag sends the events elsewhere (a
  // first-party proxy); relative to the page.
  var tag = document.currentScript;
  var apiUrl = tag && tag.getAttribute("data-api-url");
  var eventsUrl = apiUrl ? new URL(apiUrl, location.href).href : config.eventsUrl;
  var root = document.documentElement;
  fetch(eventsUrl, {
    method: "POST",
    mode: "cors",
    keepalive: true,
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({type: "pageview", visitorId: visitorId, sessionId: sessionId,
      url: location.href})
  }).then(function (response) {
    root.setAttribute("data-goaltrack-pageview", response.ok ? "recorded" : "refused");
  }, function () {
    root.setAttribute("data-goaltrack-pageview", "failed");
  });
})();
"""


def tracking_script(provider: str, events_url: str) -> str:
    """The JavaScript ``GET /<provider>/js/script.js`` serves, posting pageviews to events_url."""
    check_provider(provider)
    cookies = _SCRIPT_COOKIES[provider]
    config = {
        "visitorCookie": cookies.visitor,
        "sessionCookie": cookies.session,
        "uuidIds": cookies.uuid_ids,
        "visitorMaxAge": VISITOR_COOKIE_MAX_AGE_S,
        "sessionMaxAge": SESSION_COOKIE_MAX_AGE_S,
        "eventsUrl": events_url,
    }
    # "</" escaped: the config must not be able to end a <script> element it is inlined in.
    return _SCRIPT_TEMPLATE % {"config": json.dumps(config).replace("</", "<\\/")}


def check_script_id(value: object, field: str) -> str:
    """A visitor or session id as the script reports it; ValueError if it is not one."""
    if not isinstance(value, str) or not 1 <= len(value) <= _SCRIPT_ID_MAX:
        raise ValueError(f"{field} must be a string of 1 to {_SCRIPT_ID_MAX} characters")
    return value
