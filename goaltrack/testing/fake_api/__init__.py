"""The fake provider API: a Starlette app and the in-memory state behind it.

It enforces each provider's create-goal contract (auth, name and metadata rules, 404 without a
pageview, bots, Flowsery's rate limit) and payments contract (fields, idempotency by
transaction id, DataFast's ``DELETE``), injects faults counted in requests or shaped in time
(into payments as into goals), and shows what it received at ``/_fake/``. By job:

- :mod:`.rules`: the ``PROVIDERS`` table, body and metadata checks, the providers' answers;
- :mod:`.state`: :class:`FakeAPIState`, the records it keeps, the order of checks for one goal
  request (``FakeAPIState._handle_goal``);
- :mod:`.faults`: the fault settings, the schedule in time and their precedence;
- :mod:`.script`: the tracking script and the cookies it sets;
- :mod:`.app`: the routes, the wire form of the faults, :func:`create_app`.

Faults, set with ``FakeAPIState.set_faults(...)`` or ``POST /_fake/faults`` (same fields, JSON):

- counted in requests: ``fail_next`` (``fail_status``), ``rate_limit_next`` (429,
  ``retry_after``, ``retry_after_http_date``), ``reset_next`` (connection dropped),
  ``error_rate`` (``error_status``, ``seed``), ``huge_body_next`` (a success padded to
  ``huge_body_bytes``); ``latency_ms`` delays every answer;
- for one goal: ``fail_names=[...]`` answers goals of those names ``fail_status`` every time
  (a goal-specific 5xx while the API answers every other goal);
- shaped in time, from the call on: ``down_for=s`` and ``down_between=(t0, t1)`` (answered
  ``down_status``, default 503), ``flap=(up_s, down_s)`` with optional ``flap_for`` (up first,
  then down, repeated), ``blackhole_for=s`` (read, never answered, held until the client
  leaves), ``trickle_for=s`` (the body sent ``trickle_bytes_per_s`` bytes a second, default 1),
  ``refuse_key_for=s`` (the key refused: 401 for the first half, 403 for the second);
- hostile answers: ``retry_after_raw`` (the 429s' ``Retry-After`` verbatim: ``inf``, ``1e400``,
  a date a day ahead, garbage), ``echo_authorization`` (error bodies repeat the request's
  ``Authorization`` header, key included);
- precedence: blackhole, down, a refused key, the count faults, the provider's rules;
  trickling slows whatever the answer is. ``FakeAPIState.faults`` lists every window in epoch
  seconds (``outages``, ``trickles``, ``flap``, ``refused``); ``outage_windows()`` gives the
  merged ``(start, end)`` pairs, to compare with each record's ``received_at_epoch``.

Simplifications, on purpose: a pageview registers a visitor for a provider whatever the key or
website; any key with the right prefix is valid until revoked, suspended or denied.
Run it with :class:`goaltrack.testing.FakeAPIServer` or ``python -m goaltrack.testing``.
"""

from __future__ import annotations

from goaltrack.testing.fake_api.app import create_app
from goaltrack.testing.fake_api.faults import BLACKHOLE_HOLD_MAX_S
from goaltrack.testing.fake_api.rules import PROVIDERS, ProviderRules
from goaltrack.testing.fake_api.script import tracking_script
from goaltrack.testing.fake_api.state import (
    FakeAPIState,
    GoalRecord,
    PageviewRecord,
    PaymentRecord,
    RequestRecord,
)

__all__ = [
    "BLACKHOLE_HOLD_MAX_S",
    "PROVIDERS",
    "FakeAPIState",
    "GoalRecord",
    "PageviewRecord",
    "PaymentRecord",
    "ProviderRules",
    "RequestRecord",
    "create_app",
    "tracking_script",
]
