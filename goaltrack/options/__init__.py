"""Every goaltrack option, once: its name, type, default, meaning, environment variable,
conversion from a string and checks (:data:`TABLE`).

Everything else reads the options through this table: :class:`~goaltrack.GoalTracker`'s
signature and :class:`~goaltrack.TrackerOptions` (tests keep them equal to it), Django's
``GOALTRACK`` keys, Flask's ``GOALTRACK_*`` config keys, the ASGI middleware's keyword
arguments, the ``GOALTRACK_*`` environment variables (one per option) and the configuration
reference page (``python -m goaltrack.options > docs/configuration.md``).

- :func:`read_settings`: an adapter's option values, converted and checked, as
  :class:`AdapterSettings`; :func:`check_tracker_options`: the checks of the tracker's options;
- :func:`settings_from_env` / :func:`raw_settings_from_env`: the ``GOALTRACK_*`` variables;
- :func:`parse_bool`, :func:`parse_flush_at_request_end`: values given as strings (the
  environment, a config file) turned into the option's type, the same way for every adapter.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from goaltrack.delivery import InvalidConfiguration
from goaltrack.httpx_client import is_httpx_client
from goaltrack.script_proxy import parse_networks

__all__ = [
    "DEFAULT_FLUSH_TIMEOUT",
    "DEFAULT_PROVIDER",
    "ENVIRONMENT_VARIABLES",
    "OPTIONS",
    "TABLE",
    "AdapterSettings",
    "Mode",
    "Option",
    "check_tracker_options",
    "defaults",
    "env_name",
    "names",
    "parse_bool",
    "parse_flush_at_request_end",
    "raw_settings_from_env",
    "read_settings",
    "reference",
    "settings_from_env",
]

#: The provider of a tracker that names none.
DEFAULT_PROVIDER = "datafast"
#: Seconds ``flush_at_request_end=True`` waits for a request's goals.
DEFAULT_FLUSH_TIMEOUT = 2.0

Mode = Literal["background", "sync", "disabled", "celery"]
MODES: tuple[Mode, ...] = ("background", "sync", "disabled", "celery")

#: ``account``: who goals are sent for; ``tracker``: how the tracker works; ``adapter``: what the
#: web adapters add (not GoalTracker arguments).
Scope = Literal["account", "tracker", "adapter"]


def env_name(option: str) -> str:
    """The environment variable of *option*: ``GOALTRACK_`` and its name in upper case."""
    return f"GOALTRACK_{option.upper()}"


# -- values given as strings ---------------------------------------------------------------------

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def parse_bool(label: str, value: object) -> bool:
    """A boolean option: a bool, or one of 1/0, true/false, yes/no, on/off (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidConfiguration(f"{label} must be a bool, not {value!r}")


def parse_flush_at_request_end(label: str, value: object) -> float | None:
    """``flush_at_request_end``: seconds to wait for a request's goals, or None not to wait.

    True (or "true", "yes", "on") waits :data:`DEFAULT_FLUSH_TIMEOUT` seconds; a number (or a
    numeric string) that many; False, None, 0 (or "false", "no", "off", "") not at all.
    """
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_FLUSH_TIMEOUT
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _FALSE:
            return None
        if lowered in _TRUE - {"1"}:
            return DEFAULT_FLUSH_TIMEOUT
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidConfiguration(
            f"{label} must be True, False or a number of seconds, not {value!r}"
        ) from None
    if not seconds >= 0:
        raise InvalidConfiguration(f"{label} must not be negative, not {value!r}")
    return seconds or None


@dataclass(frozen=True)
class Conversion:
    """How an option's value is read from a string (the environment, a config file)."""

    form: str
    """How the value is written as a string, for the reference page."""
    convert: Callable[[str, object], object]
    """(label, value) -> the value; *label* names the option as the user wrote it."""


def _as_written(label: str, value: object) -> object:
    return value


def _strings_as(kind: type[int] | type[float], article: str) -> Callable[[str, object], object]:
    def convert(label: str, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return kind(value)
        except ValueError:
            raise InvalidConfiguration(
                f"{label} must be {article} {kind.__name__}, not {value!r}"
            ) from None

    return convert


def _string_bool(label: str, value: object) -> object:
    return parse_bool(label, value) if isinstance(value, str) else value


def _imported(label: str, value: object) -> object:
    """``"package.module:attribute"`` (or ``package.module.attribute``): the callable it names."""
    if not isinstance(value, str):
        return value
    module_name, sep, attribute = value.partition(":")
    if not sep:
        module_name, _, attribute = value.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InvalidConfiguration(f"{label}: cannot import {value!r}: {exc}") from None
    if not callable(found):
        raise InvalidConfiguration(f"{label}: {value!r} is not callable")
    return found


TEXT = Conversion("as written", _as_written)
INTEGER = Conversion("an integer: `3`", _strings_as(int, "an"))
NUMBER = Conversion("a number: `0.5`", _strings_as(float, "a"))
BOOLEAN = Conversion("`1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`", _string_bool)
#: Checked whatever its type (a bool, 0/1, or one of the strings).
STRICT_BOOLEAN = Conversion(BOOLEAN.form, parse_bool)
IMPORTED = Conversion('`"package.module:attribute"`, imported', _imported)
NETWORKS = Conversion(
    'comma-separated addresses or networks: `"10.0.0.1, 172.16.0.0/12"`', parse_networks
)
SECONDS_OR_BOOLEAN = Conversion(
    "`true` (2 s), `false`, or a number of seconds: `0.5`", parse_flush_at_request_end
)


# -- checks --------------------------------------------------------------------------------------

#: (option name, value): raises :class:`~goaltrack.InvalidConfiguration` for a value it refuses.
Check = Callable[[str, Any], None]


def _at_least_1(name: str, value: Any) -> None:
    if int(value) < 1:
        raise InvalidConfiguration(f"{name} must be at least 1")


def _not_negative(name: str, value: Any) -> None:
    if value < 0:
        raise InvalidConfiguration(f"{name} must not be negative")


def _more_than_0(name: str, value: Any) -> None:
    if not value > 0:
        raise InvalidConfiguration(f"{name} must be more than 0 seconds")


def _one_of_the_modes(name: str, value: Any) -> None:
    if value not in MODES:
        raise InvalidConfiguration(
            f"{name} must be 'background', 'sync', 'disabled' or 'celery', not {value!r}"
        )


def _true_false_or_none(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        raise InvalidConfiguration(f"{name} must be True, False or None, not {value!r}")


def _true_or_false(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidConfiguration(f"{name} must be True or False, not {value!r}")


def _client_or_factory(name: str, value: Any) -> None:
    if value is not None and not (is_httpx_client(value) or callable(value)):
        raise InvalidConfiguration(
            f"{name} must be an httpx.Client / httpx2.Client or a callable returning one"
        )


def _goal_filter(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise InvalidConfiguration(f"{name} must be a callable: goal -> goal or None")


def _options_together(values: Mapping[str, Any]) -> None:
    """The checks of one option against another."""
    if values["outbox"] is not None and values["mode"] in ("sync", "celery"):
        raise InvalidConfiguration(
            f"outbox is for the background mode; mode {values['mode']!r} does not use it"
        )
    if values["http_client"] is not None and values["proxy"] is not None:
        raise InvalidConfiguration(
            "proxy is for the default HTTP client; configure the proxy on http_client instead"
        )


# -- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One option, as every entry point reads it."""

    name: str
    scope: Scope
    type: str
    """Its annotation in ``GoalTracker(...)`` (a test keeps them equal)."""
    default: object
    doc: str
    conversion: Conversion = TEXT
    checks: tuple[Check, ...] = ()
    shown_default: str = ""
    """The default as the reference page says it, when its repr says less (``24 * 3600.0``)."""

    @property
    def env(self) -> str:
        """Its environment variable (and its Flask config key)."""
        return env_name(self.name)

    @property
    def django_key(self) -> str:
        """Its key in Django's ``GOALTRACK`` setting."""
        return self.name.upper()

    def convert(self, value: object, label: str | None = None) -> object:
        """*value* in the option's type when given as a string; other values as they are (but
        for the options that read any value: ``skip_bots``, ``flush_at_request_end``).
        *label* is how the user wrote the option (``GOALTRACK_MAX_RETRIES``), for errors."""
        return self.conversion.convert(label or self.name, value)

    def check(self, value: object) -> None:
        """Raise :class:`~goaltrack.InvalidConfiguration` if the option cannot take *value*."""
        for check in self.checks:
            check(self.name, value)


_NOT_NEGATIVE = (_not_negative,)

TABLE: tuple[Option, ...] = (
    # -- the account
    Option(
        "api_key",
        "account",
        "str | None",
        None,
        "The provider's API key: a DataFast website key (`df_…`) or account token (`dft_…`, "
        "with `website_id`), a Faurya key, a Flowsery key (`flow_…`; `flow_ws_…` with "
        "`website_id`). Without one, goals are validated but not sent (one warning: "
        "`goaltrack.W001`). Best kept in the environment; it never appears in logs, reprs or "
        "errors.",
    ),
    Option(
        "provider",
        "account",
        "str | Provider",
        DEFAULT_PROVIDER,
        '`"datafast"`, `"faurya"` or `"flowsery"`: whose API goals are sent to, with its rules '
        "for goal names, metadata and cookies.",
    ),
    Option(
        "api_url",
        "account",
        "str | None",
        None,
        "The base URL of the API instead of the provider's (a proxy, a self-hosted endpoint, "
        "the local fake API); the goals path `/api/v1/goals` is appended. Plain `http://` is "
        "refused except for loopback hosts, so the key never travels in clear text.",
    ),
    Option(
        "website_id",
        "account",
        "str | None",
        None,
        "The website an account/workspace token (`dft_…`, `flow_ws_…`) sends goals for; not "
        "needed with a website key.",
    ),
    # -- the tracker
    Option(
        "mode",
        "tracker",
        "Mode",
        "background",
        '`"background"`: a worker thread delivers, `track()` never waits for the network; '
        '`"sync"`: delivered before `track()` returns (scripts, serverless); `"disabled"`: '
        'validate, log at debug level, send nothing; `"celery"`: a Celery task delivers '
        "(`goaltrack.transports.celery`). No API key means disabled, with one warning.",
        checks=(_one_of_the_modes,),
    ),
    Option(
        "max_queue_size",
        "tracker",
        "int",
        10_000,
        "Goals waiting (queued and retrying) at most; past it new goals are dropped, counted "
        "and reported.",
        INTEGER,
        (_at_least_1,),
    ),
    Option(
        "max_in_flight",
        "tracker",
        "int",
        128,
        "Requests in flight at most. Delivery starts with 4 and adds one for each goal "
        "delivered while others wait, up to this; each failure halves it (not below 4), and a "
        "down API gets one probe at a time. The courier's event loop carries them all; "
        "delivering from threads, each is a worker thread. The outbox delivers with 4 (or "
        "this, if lower).",
        INTEGER,
        (_at_least_1,),
    ),
    Option(
        "delivery_process",
        "tracker",
        "bool | None",
        None,
        'How `"background"` mode delivers. True: from a separate process per web process (the '
        "courier, `goaltrack.transports.courier`): `track()` writes the goal to a pipe, and the "
        "network, HTTP and retries cost the courier's CPU, not the web process's. False: from "
        "worker threads in the web process. None: the courier wherever it can run (not with "
        "`outbox` or `http_client`, under uWSGI or gevent, on serverless platforms, or when the "
        "interpreter is embedded), "
        "else the threads; True asks for it where it can run, with a warning where it cannot.",
        BOOLEAN,
        (_true_false_or_none,),
    ),
    Option(
        "serverless",
        "tracker",
        "bool | None",
        None,
        "Whether the process runs where the platform freezes it (or takes its CPU) once a "
        "response is handed back. None: detected (AWS Lambda `AWS_LAMBDA_FUNCTION_NAME`, Google "
        "Cloud Run `K_SERVICE`, Vercel `VERCEL`, Azure Functions `FUNCTIONS_WORKER_RUNTIME`). "
        "There a request that tracked goals waits for their delivery before its response is "
        "handed back (`flush_at_request_end` seconds, 2 s when not set, never past a Lambda "
        "invocation's time left), `delivery_process` None delivers from this process's threads, "
        "and an `outbox` on the instance's disk is warned about; one INFO line at start says so. "
        "True: the same where nothing is detected; False: a server's rules, e.g. Cloud Run with "
        "instance-based billing, whose CPU stays on (`docs/serverless.md`).",
        BOOLEAN,
        (_true_false_or_none,),
    ),
    Option(
        "max_retries",
        "tracker",
        "int",
        10,
        "Retries for a goal that keeps failing while the API answers other goals (a "
        "goal-specific 5xx). Failures during an outage never count: see `give_up_after`.",
        INTEGER,
        _NOT_NEGATIVE,
    ),
    Option(
        "backoff_base",
        "tracker",
        "float",
        0.5,
        "The first wait, in seconds, of the per-goal exponential backoff (with jitter) between "
        "the retries of one goal; `Retry-After` wins when the API sends it.",
        NUMBER,
        _NOT_NEGATIVE,
    ),
    Option(
        "backoff_max",
        "tracker",
        "float",
        60.0,
        "The longest wait, in seconds, between two retries of one goal.",
        NUMBER,
        _NOT_NEGATIVE,
    ),
    Option(
        "give_up_after",
        "tracker",
        "float",
        24 * 3600.0,
        "Seconds after which a goal still failing transiently (the API down, slow, "
        "rate-limiting) is given up; with the outbox, `outbox_max_age` is this budget.",
        NUMBER,
        _NOT_NEGATIVE,
        "86400.0 (24 h)",
    ),
    Option(
        "probe_interval_max",
        "tracker",
        "float",
        1.0,
        "While the API is down, the longest wait in seconds between two probe requests (one at "
        "a time).",
        NUMBER,
        (_more_than_0,),
    ),
    Option(
        "refused_probe_interval_max",
        "tracker",
        "float",
        60.0,
        "While the API refuses the key (401/403), the longest wait in seconds between two probe "
        "requests (they start 2 s apart and double); goals are held meanwhile, not failed.",
        NUMBER,
        _NOT_NEGATIVE,
    ),
    Option(
        "refusal_give_up",
        "tracker",
        "float",
        3600.0,
        "Seconds a refused key may stay refused before the goals it holds fail with its status.",
        NUMBER,
        _NOT_NEGATIVE,
    ),
    Option(
        "timeout",
        "tracker",
        "float",
        5.0,
        "Seconds one request may take in all: connect, send and the whole response (a server "
        "that never answers, or answers a byte a second, holds a worker this long, no longer).",
        NUMBER,
        _NOT_NEGATIVE,
    ),
    Option(
        "shutdown_timeout",
        "tracker",
        "float",
        3.0,
        "How long, in seconds, the flush at interpreter exit may take.",
        NUMBER,
        _NOT_NEGATIVE,
    ),
    Option(
        "sync_deadline",
        "tracker",
        "float",
        10.0,
        'In `"sync"` mode, the most one `track()` call may spend on retries, in seconds.',
        NUMBER,
    ),
    Option(
        "flush_at_exit",
        "tracker",
        "bool",
        True,
        "Flush the goals still pending at interpreter exit (at most `shutdown_timeout`).",
        BOOLEAN,
    ),
    Option(
        "truncate_metadata",
        "tracker",
        "bool",
        False,
        "Cut over-long metadata values to 255 characters instead of refusing the goal.",
        BOOLEAN,
    ),
    Option(
        "proxy",
        "tracker",
        "str | None",
        None,
        "HTTP(S) proxy URL for the default client (`HTTPS_PROXY`/`NO_PROXY` are honoured "
        "without it). Not with `http_client`: configure the proxy on that client.",
    ),
    Option(
        "http_client",
        "tracker",
        "Any",
        None,
        "An `httpx.Client` / `httpx2.Client`, or a callable returning one (then each process "
        "makes its own: use a factory with pre-forking servers), to deliver with instead of the "
        "default client: its proxies, TLS settings, hooks, mounts and transports apply "
        "(`goaltrack.httpx_client`).",
        IMPORTED,
        (_client_or_factory,),
    ),
    Option(
        "before_send",
        "tracker",
        "Callable[[Tracked], Tracked | None] | None",
        None,
        "Called with each validated goal and payment in the caller's thread: return it (changed "
        "or not, with `.replace(...)`) to send it, or None to drop it (counted as `filtered`). "
        "A changed one is validated again. Payments carry personal data (`customer_email`, "
        "`customer_name`): scrub them here.",
        IMPORTED,
        (_goal_filter,),
    ),
    Option(
        "outbox",
        "tracker",
        "str | None",
        None,
        'Path of a SQLite outbox file: in `"background"` mode each goal is committed there '
        "before `track()` returns (or, when another process holds the file's lock for more than "
        "10 ms or the file cannot be written, kept in memory and written by a worker), and "
        "survives crashes, restarts and outages (`goaltrack.transports.outbox`).",
    ),
    Option(
        "outbox_max_goals",
        "tracker",
        "int",
        100_000,
        "Goals the outbox holds at most; past that new goals are dropped (counted, logged).",
        INTEGER,
        (_at_least_1,),
    ),
    Option(
        "outbox_max_age",
        "tracker",
        "float",
        7 * 24 * 3600.0,
        "Seconds after which an undelivered goal moves to the outbox's dead letters.",
        NUMBER,
        _NOT_NEGATIVE,
        "604800.0 (7 days)",
    ),
    Option(
        "celery_app",
        "tracker",
        "Any",
        None,
        'In `"celery"` mode: the Celery app, or `"package.module:attribute"` naming it '
        "(imported by the Celery transport); default: Celery's current app.",
    ),
    Option(
        "celery_queue",
        "tracker",
        "str | None",
        None,
        'In `"celery"` mode: the queue for the delivery tasks (default: the app\'s default).',
    ),
    Option(
        "on_delivery",
        "tracker",
        "DeliveryHook | None",
        None,
        "Called `(goal, result)` from the worker for each delivered goal (`result.event_id`) "
        "and payment (a `Payment` as `goal`; `result.duplicate`: the API had it already); in "
        "the adapters, before the `goal_delivered` / `payment_delivered` signal.",
        IMPORTED,
    ),
    Option(
        "on_failure",
        "tracker",
        "FailureHook | None",
        None,
        "Called `(goal, result)` for each goal or payment that finally failed (`result.status`, "
        "`result.reason`: the provider's message); in the adapters, before `goal_failed` / "
        "`payment_failed`.",
        IMPORTED,
    ),
    Option(
        "on_drop",
        "tracker",
        "DropHook | None",
        None,
        "Called `(goal, reason)` for each goal or payment dropped, never sent (queue full, "
        "tracker closed); in the adapters, before `goal_dropped` / `payment_dropped`.",
        IMPORTED,
    ),
    Option(
        "strict",
        "tracker",
        "bool | None",
        None,
        "Raise `goaltrack.InvalidGoal` at the call site for a goal the provider would refuse "
        "(True), or never raise into the caller (False: what the provider's rules can repair is "
        "sent repaired with a WARNING, the rest is logged at ERROR, counted as `invalid` and "
        "not sent). None: strict under goaltrack's pytest plugin and in the adapters' "
        "development mode (Django `DEBUG`, Flask debug or testing, the ASGI middleware's "
        "`debug=True`); `debug`, a logging option, never makes goals strict.",
        BOOLEAN,
        (_true_false_or_none,),
    ),
    Option(
        "debug",
        "tracker",
        "bool",
        False,
        "Log each goal as tracked and as it settles (name, visitor id, metadata, HTTP status; "
        "never the key) at DEBUG level on the `goaltrack` logger, which this sets to DEBUG; with "
        "no logging configured at all, the lines go to stderr. The ASGI middleware's `debug=True` "
        "is also its development mode.",
        BOOLEAN,
        (_true_or_false,),
    ),
    # -- the adapters
    Option(
        "skip_bots",
        "adapter",
        "bool",
        True,
        "Requests from known crawlers (by User-Agent) track nothing: the providers refuse them.",
        STRICT_BOOLEAN,
    ),
    Option(
        "flush_at_request_end",
        "adapter",
        "bool | float",
        False,
        "`True` (2 s) or seconds: a request that tracked goals waits until they are delivered "
        "before its response is complete, for hosts that freeze the process once the response "
        "is sent. False: no waiting, but where `serverless` is on (detected, by default), "
        "which waits 2 s, or the seconds given here, at most.",
        SECONDS_OR_BOOLEAN,
    ),
    Option(
        "tracking_id",
        "adapter",
        "str | None",
        None,
        "The website id of the provider's tracking script, for the script tag "
        "(`goaltrack.script_tag()`, Django's `{% goaltrack_script %}`, the `goaltrack_script()` "
        "Jinja global): DataFast's `data-website-id` (`dfid_…`), not the API's `website_id`. "
        "Without it the tag renders nothing (one warning).",
    ),
    Option(
        "domain",
        "adapter",
        "str | None",
        None,
        "The site's domain, the script tag's `data-domain` (`example.com`); left out when unset.",
    ),
    Option(
        "script_proxy",
        "adapter",
        "bool",
        False,
        "Serve the provider's tracking script and forward its events from the site itself "
        "(`<script_proxy_prefix>/script.js`, `<script_proxy_prefix>/events`), so that blockers "
        "of third-party hosts do not stop them; the script tag then points there. Forwards "
        "only the event's body, `User-Agent`, `Content-Type`, `Origin` and the visitor's "
        "address; never the site's cookies or `Authorization`. Django needs goaltrack's "
        "middleware; Django and Flask answer events at once (202) and forward them from a "
        "small background pool. DataFast (and the bundled fake API) only unless the ASGI "
        "middleware's `script_proxy_upstream` gives the URLs (not the outbound HTTP `proxy`).",
        STRICT_BOOLEAN,
    ),
    Option(
        "script_proxy_prefix",
        "adapter",
        "str",
        "/_goaltrack",
        "The path under which `script_proxy` serves the script and the events endpoint.",
    ),
    Option(
        "trusted_proxies",
        "adapter",
        "tuple[str, ...]",
        (),
        "The reverse proxies (addresses or CIDR networks) whose `X-Forwarded-For` names the "
        "visitor whose events `script_proxy` forwards; from anyone else the header is ignored "
        "and the connection's address is the visitor's.",
        NETWORKS,
    ),
)

#: Every option by name, in the table's order.
OPTIONS: dict[str, Option] = {option.name: option for option in TABLE}
#: Environment variable -> option name, for every option.
ENVIRONMENT_VARIABLES: dict[str, str] = {option.env: option.name for option in TABLE}
#: The hooks: what the adapters wrap with their signals.
HOOK_OPTIONS = ("on_delivery", "on_failure", "on_drop")


def names(*scopes: Scope) -> tuple[str, ...]:
    """The names of the options of *scopes* (all when none), in the table's order."""
    return tuple(o.name for o in TABLE if not scopes or o.scope in scopes)


def defaults(*scopes: Scope) -> dict[str, object]:
    """Option name -> default, for the options of *scopes* (all when none)."""
    return {o.name: o.default for o in TABLE if not scopes or o.scope in scopes}


def check_tracker_options(values: Mapping[str, Any]) -> None:
    """Raise :class:`~goaltrack.InvalidConfiguration` for the first tracker option (of *values*:
    every tracker option by name) that cannot work, alone or with another."""
    for name in names("tracker"):
        OPTIONS[name].check(values[name])
    _options_together(values)


# -- the environment -----------------------------------------------------------------------------


def raw_settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``GOALTRACK_*`` environment variables that are set (not empty), by option name."""
    environ = os.environ if environ is None else environ
    return {arg: environ[var] for var, arg in ENVIRONMENT_VARIABLES.items() if environ.get(var)}


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """GoalTracker arguments from the ``GOALTRACK_*`` environment variables, converted.

    The adapters' own options (``GOALTRACK_SKIP_BOTS``, ...) are left out. Raises
    :class:`~goaltrack.InvalidConfiguration`, naming the variable, for a value that cannot be
    converted.
    """
    tracker_names = names("account", "tracker")
    return {
        name: OPTIONS[name].convert(value, env_name(name))
        for name, value in raw_settings_from_env(environ).items()
        if name in tracker_names
    }


# -- an adapter's settings -----------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterSettings:
    """An adapter's options, converted and checked: what it builds its tracker and adapter with."""

    tracker_kwargs: dict[str, Any]
    """For ``GoalTracker(**...)`` / ``goaltrack.configure(**...)``: given options, hooks aside."""
    hooks: dict[str, Any]
    """The user's ``on_delivery`` / ``on_failure`` / ``on_drop`` (given ones only)."""
    skip_bots: bool = True
    """Requests from known crawlers track nothing."""
    flush_at_request_end: float | None = None
    """Seconds a request that tracked goals waits for their delivery before it ends; None: no
    waiting. For hosts that freeze the process once the response is sent (serverless)."""
    tracking_id: str | None = None
    """The tracking script's website id, for the script tag (DataFast's ``dfid_…``)."""
    domain: str | None = None
    """The site's domain, the script tag's ``data-domain``."""
    script_proxy: bool = False
    """Serve the tracking script and forward its events from the site."""
    script_proxy_prefix: str = "/_goaltrack"
    """The path the script proxy answers under."""
    trusted_proxies: tuple[str, ...] = ()
    """The reverse proxies (normalized networks) whose ``X-Forwarded-For`` names the visitor."""

    def check_tracker_options(self) -> None:
        """Raise for tracker options that cannot work, as ``GoalTracker(...)`` would."""
        given = {**self.tracker_kwargs, **self.hooks}
        check_tracker_options(
            {name: given.get(name, default) for name, default in defaults("tracker").items()}
        )


def read_settings(
    values: Mapping[str, object], label: Callable[[str], str] = str
) -> AdapterSettings:
    """:class:`AdapterSettings` from option values by name (``max_retries``, ``skip_bots``, ...).

    Strings are converted (``"false"``, ``"3"``, ``"0.5"``, ``"pkg.module:hook"``); None means not
    given. *label* spells a name as the user wrote it (``GOALTRACK_MAX_RETRIES``), for errors.
    Raises :class:`~goaltrack.InvalidConfiguration` for a value that cannot be converted, and
    TypeError for an unknown name.
    """
    unknown = sorted(set(values) - set(OPTIONS))
    if unknown:
        raise TypeError(
            f"unknown goaltrack option(s): {', '.join(map(label, unknown))}; "
            f"known: {', '.join(map(label, OPTIONS))}"
        )
    converted = {
        name: OPTIONS[name].convert(value, label(name))
        for name, value in values.items()
        if value is not None
    }
    adapter = {
        name: converted.pop(name) if name in converted else OPTIONS[name].convert(default)
        for name, default in defaults("adapter").items()
    }
    hooks = {name: converted.pop(name) for name in HOOK_OPTIONS if name in converted}
    return AdapterSettings(converted, hooks, **adapter)  # type: ignore[arg-type]


# -- the reference page --------------------------------------------------------------------------

_SCOPE_TITLES: dict[Scope, tuple[str, str]] = {
    "account": (
        "The account",
        "Arguments of `GoalTracker`, `goaltrack.configure()` and `GoalTracker.from_env()` (the "
        "key is the one positional argument), and options of every adapter.",
    ),
    "tracker": (
        "The tracker",
        "Keyword arguments of `GoalTracker`, `goaltrack.configure()` and "
        "`GoalTracker.from_env()`, and options of every adapter.",
    ),
    "adapter": (
        "The adapters",
        "What the Django, Flask and ASGI adapters add, with the same meaning in each; not "
        "`GoalTracker` arguments. `goaltrack.script_tag()` reads `tracking_id` and `domain` "
        "from the environment.",
    ),
}


def _shown(option: Option) -> str:
    return option.shown_default or repr(option.default)


def reference() -> str:
    """The configuration reference page (``docs/configuration.md``), from :data:`TABLE`."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from goaltrack/options: python -m goaltrack.options > "
        "docs/configuration.md -->",
        "",
        f"Every goaltrack option ({len(TABLE)}), one table for every entry point: "
        "`GoalTracker(...)`, `goaltrack.configure(...)`, Django's `GOALTRACK` setting, Flask's "
        "`GOALTRACK_*` config keys, the ASGI middleware's keyword arguments and the `GOALTRACK_*` "
        "environment variables. Where an adapter reads the environment, what the app sets wins "
        "and the variables fill in the rest. A value given as a string (the environment, a "
        "config file) is converted the same way everywhere; a value an option cannot take is "
        "refused with the same message (`goaltrack.E101` in the adapters' checks).",
        "",
        "| option | default | environment | Django | Flask | ASGI |",
        "|---|---|---|---|---|---|",
    ]
    for option in TABLE:
        lines.append(
            f"| [`{option.name}`](#{option.name}) | `{_shown(option)}` | `{option.env}` | "
            f'`"{option.django_key}"` | `{option.env}` | `{option.name}=` |'
        )
    for scope, (title, intro) in _SCOPE_TITLES.items():
        lines += ["", f"## {title}", "", intro]
        for option in TABLE:
            if option.scope != scope:
                continue
            lines += [
                "",
                f"### `{option.name}`",
                "",
                option.doc,
                "",
                f"- type: `{option.type}`; default: `{_shown(option)}`",
                f"- environment: `{option.env}`; from a string: {option.conversion.form}",
                f'- Django: `GOALTRACK["{option.django_key}"]`; '
                f'Flask: `app.config["{option.env}"]`; '
                f"ASGI: `GoalTrackMiddleware(app, {option.name}=...)`",
            ]
    lines += [
        "",
        "## Django only",
        "",
        "`ON_COMMIT` (default False: goals tracked inside a transaction wait for its commit) and "
        '`AUTH_GOALS` (True for `{"user_logged_in": "login"}`, or a mapping of '
        "`django.contrib.auth.signals` names to goal names) are keys of the `GOALTRACK` setting "
        "only.",
    ]
    return "\n".join(lines) + "\n"
