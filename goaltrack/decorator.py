"""Goals asked for ahead of time, by a decorator or a signal connection: the rules, once.

- :class:`GoalSpec`: the goal, checked when it is declared. A decorated view counts a
  conversion (:meth:`GoalSpec.counts`): by default a POST, PUT, PATCH or DELETE answered with a
  status below 400 (:func:`is_success`; never when it raised), else ``methods=``; ``when`` can
  still say no. A signal connection is :meth:`GoalSpec.connect`, every adapter's
  ``connect_goal``. Whatever goes wrong at request time is logged with the goal's name and never
  reaches the view or the code that sent the signal: the response is the one the view gave.
- :class:`DeclaredCall`: its ``metadata`` and ``when`` callables get the arguments they declare,
  by name, checked against the names that can ever be given (:func:`view_arguments` for a view,
  :func:`signal_arguments` and the tables of well-known signals' arguments for a signal:
  :data:`BLINKER_SIGNAL_ARGUMENTS`, :data:`DJANGO_SIGNAL_ARGUMENTS`).
- :func:`precheck_goal_name`: a name no provider could accept is an error at declaration.

Each adapter only says how to find the request's goals, its method and its status (a view
wrapped by :func:`wrap_view`, sync or async alike, or by its own); the goal is then tracked
through :class:`goaltrack.context.RequestGoals`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import logging
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from goaltrack.context import Metadata, RequestGoals, log_untracked
from goaltrack.goals import Goal, InvalidGoal
from goaltrack.providers import PROVIDERS
from goaltrack.tracker import call_site, caller_location

__all__ = [
    "BLINKER_SIGNAL_ARGUMENTS",
    "DJANGO_SIGNAL_ARGUMENTS",
    "UNSAFE_METHODS",
    "DeclaredCall",
    "GoalSpec",
    "MetadataArg",
    "is_success",
    "precheck_goal_name",
    "signal_arguments",
    "view_arguments",
    "wrap_view",
]

logger = logging.getLogger("goaltrack")

#: What decorators accept as ``metadata=``: a mapping, or a callable building one per request.
MetadataArg = Metadata | Callable[..., Metadata | None] | None


def is_success(status: int | None) -> bool:
    """The decorator's status rule: a view tracks only when it answered below 400 (None: it
    gave nothing to answer with)."""
    return status is not None and status < 400


class DeclaredCall:
    """A user's callable, called with the arguments it declares, each by its name.

    ``call(named)`` passes the values of *named* whose names the callable declares (all of them
    to a ``**kwargs``); nothing is passed by position, so ``lambda user, request: ...`` on
    ``user_logged_in`` gets the user as ``user`` and the sender only as a parameter named
    ``sender``. Built with the names that can ever be given (*available*; None: not known), a
    callable declaring any other name is a TypeError at once, naming what it could take.
    """

    __slots__ = ("_keywords", "_positional_only", "_var_keyword", "func")

    def __init__(
        self,
        func: Callable[..., Any],
        available: Collection[str] | None = None,
        *,
        what: str = "the callable",
    ) -> None:
        self.func = func
        try:
            parameters = list(inspect.signature(func).parameters.values())
        except (TypeError, ValueError):  # no signature to read (some builtins): pass everything
            self._positional_only: tuple[str, ...] = ()
            self._keywords: tuple[str, ...] = ()
            self._var_keyword = True
            return
        kinds = inspect.Parameter
        self._positional_only = tuple(p.name for p in parameters if p.kind is kinds.POSITIONAL_ONLY)
        self._keywords = tuple(
            p.name
            for p in parameters
            if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
        )
        self._var_keyword = any(p.kind is kinds.VAR_KEYWORD for p in parameters)
        if available is not None:
            unknown = [
                name for name in (*self._positional_only, *self._keywords) if name not in available
            ]
            if unknown:
                raise TypeError(
                    f"{what} declares {', '.join(map(repr, unknown))}, which it is never given: "
                    f"arguments are passed by name, and the names it can take are "
                    f"{', '.join(sorted(available))} (or **kwargs)"
                )

    def __call__(self, named: Mapping[str, Any]) -> Any:
        positional_only = self._positional_only
        args = [named[name] for name in positional_only if name in named]
        if self._var_keyword:
            kwargs = {key: value for key, value in named.items() if key not in positional_only}
        else:
            kwargs = {key: named[key] for key in self._keywords if key in named}
        return self.func(*args, **kwargs)


#: What the decorators count by default: requests that change something, not pages shown.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class GoalSpec:
    """A goal a decorator or a signal connection will track: checked when it is made.

    The name (against every provider's rules: the provider may not be configured yet), literal
    metadata, ``description`` and ``timezone`` raise :class:`~goaltrack.InvalidGoal` now; the
    configured provider's rules apply again when the goal is tracked. :meth:`with_arguments`
    then checks that the ``metadata`` and ``when`` callables declare only names they can be
    given. ``origin`` is where the goal was declared (``file:line``), for log lines.
    """

    name: str
    metadata: MetadataArg = None
    description: str | None = None
    timezone: str | None = None
    on_commit: bool | None = None
    """Django: send only once the current transaction commits (None: the setting)."""
    methods: Collection[str] | None = None
    """Decorators: the HTTP methods that count (None: POST, PUT, PATCH and DELETE)."""
    when: Callable[..., object] | None = None
    """Called with the arguments it declares (by name): a false result skips the goal."""
    origin: str = field(default="", compare=False)
    _metadata_call: DeclaredCall | None = field(default=None, init=False, repr=False, compare=False)
    _when_call: DeclaredCall | None = field(default=None, init=False, repr=False, compare=False)
    _methods: frozenset[str] = field(default=UNSAFE_METHODS, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        precheck_goal_name(self.name)
        metadata = self.metadata
        if callable(metadata) and not isinstance(metadata, Mapping):
            object.__setattr__(self, "_metadata_call", DeclaredCall(metadata))
        elif metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidGoal(
                f"metadata must be a mapping or a callable, got {type(metadata).__name__}",
                field="metadata",
                rule="metadata is a flat object",
            )
        if self.when is not None:
            if not callable(self.when):
                raise TypeError(f"when must be a callable, not {type(self.when).__name__}")
            object.__setattr__(self, "_when_call", DeclaredCall(self.when))
        if self.methods is not None:
            if isinstance(self.methods, str) or not all(
                isinstance(method, str) for method in self.methods
            ):
                raise TypeError(
                    f'methods is a list of HTTP methods, e.g. ["GET"]: {self.methods!r}'
                )
            object.__setattr__(self, "_methods", frozenset(m.upper() for m in self.methods))
        if not self.origin:
            # Past this method and the dataclass's generated __init__ (file "<string>").
            object.__setattr__(self, "origin", caller_location(skip=3))
        # Metadata rules are the same for every provider; each field is checked with a provider
        # that takes it.
        Goal.create(
            PROVIDERS["flowsery"],
            "check",
            metadata=metadata if isinstance(metadata, Mapping) else None,
            timezone=self.timezone,
            require_visitor=False,
        )
        if self.description is not None:
            Goal.create(
                PROVIDERS["datafast"],
                "check",
                description=self.description,
                require_visitor=False,
            )

    def with_arguments(self, available: Collection[str] | None, where: str) -> GoalSpec:
        """This spec, its callables checked against the names they can be given (*available*;
        None: unknown, any name goes). Raises TypeError naming *where* and those names."""
        checked = copy.copy(self)
        for attribute, option in (("_metadata_call", "metadata"), ("_when_call", "when")):
            call: DeclaredCall | None = getattr(self, attribute)
            if call is not None:
                what = f"{where}: {option}={_callable_name(call.func)}"
                object.__setattr__(
                    checked, attribute, DeclaredCall(call.func, available, what=what)
                )
        return checked

    def metadata_for(self, named: Mapping[str, Any]) -> Metadata | None:
        """The metadata for one request or signal: the mapping, or what the callable returns."""
        call = self._metadata_call
        if call is None:
            return self.metadata  # type: ignore[return-value]
        return call(named)  # type: ignore[no-any-return]

    def counts(self, method: str | None, status: int | None) -> bool:
        """The decorator rule before ``when``: a counted method, a status below 400."""
        if not is_success(status):
            logger.debug("goaltrack: goal %r not tracked: the view answered %s", self.name, status)
            return False
        if method is not None and method not in self._methods:  # None: not known (no scope)
            logger.debug(
                "goaltrack: goal %r not tracked: %s is not one of the methods that count (%s)",
                self.name,
                method,
                ", ".join(sorted(self._methods)),
            )
            return False
        return True

    def track_after_view(
        self,
        goals_for: Callable[[], RequestGoals | None],
        method: str | None,
        status: int | None,
        named: Mapping[str, Any],
    ) -> None:
        """The decorator rule: track for a counted method when the view answered below 400 and
        ``when`` (if any) agrees; never raise.

        Called only once the view returned (a view that raised tracks nothing). *goals_for*
        finds the request's goals (the adapter's glue); *named* holds what the ``metadata`` and
        ``when`` callables may receive, by name.
        """
        if not self.counts(method, status):
            return
        goals = None
        try:
            when = self._when_call
            if when is not None and not when(named):
                logger.debug("goaltrack: goal %r not tracked: when= said no", self.name)
                return
            goals = goals_for()
            if goals is None:
                logger.error(
                    "goaltrack: goal %r from a decorated view was not tracked: the request did "
                    "not go through goaltrack (is its middleware or extension installed?)",
                    self.name,
                )
                return
            self._track(goals, named)
        except Exception:
            log_untracked(self.name, "a decorated view", goals.describe() if goals else "")

    def _track(self, goals: RequestGoals, named: Mapping[str, Any]) -> None:
        token = call_site.set(self.origin)
        try:
            goals.track_spec(self, self.metadata_for(named))
        finally:
            call_site.reset(token)

    def signal_receiver(
        self, goals_for: Callable[[object, Mapping[str, Any]], RequestGoals | None]
    ) -> Callable[..., None]:
        """A receiver tracking this goal each time a signal is sent; it never raises.

        ``when`` and ``metadata`` get the signal's keyword arguments by name (the sender as
        ``sender``); *goals_for* finds the request's goals for the signal (the adapter's glue),
        or None to skip it.
        """
        spec = self

        def receiver(sender: object, **kwargs: Any) -> None:
            try:
                named = {**kwargs, "sender": sender}
                when = spec._when_call
                if when is not None and not when(named):
                    logger.debug("goaltrack: goal %r not tracked: when= said no", spec.name)
                    return
                goals = goals_for(sender, kwargs)
                if goals is None:
                    logger.warning(
                        "goaltrack: goal %r from a signal was not tracked: it was sent outside "
                        "any app with goaltrack",
                        spec.name,
                    )
                    return
                spec._track(goals, named)
            except Exception:
                log_untracked(spec.name, "a signal", _describe_sender(sender))

        receiver.__name__ = receiver.__qualname__ = f"goaltrack_goal_{self.name}"
        return receiver

    def connect(
        self,
        signal: Any,
        goals_for: Callable[[object, Mapping[str, Any]], RequestGoals | None],
        table: Mapping[tuple[str, str], tuple[str, ...]],
        *,
        always_sent: Collection[str] = (),
        **options: Any,
    ) -> Callable[..., None]:
        """Every adapter's ``connect_goal``: this spec checked against what *signal* sends (the
        names in *table*, if it is a signal *table* knows, and *always_sent*, names every signal
        of its kind adds), its :meth:`signal_receiver` connected with a strong reference
        (``signal.connect(receiver, weak=False, **options)``) and returned."""
        signal_name, available = signal_arguments(signal, table)
        if available is not None:
            available |= frozenset(always_sent)
        checked = self.with_arguments(available, f"connect_goal({signal_name}, {self.name!r})")
        receiver = checked.signal_receiver(goals_for)
        signal.connect(receiver, weak=False, **options)
        return receiver


def wrap_view(
    view: Callable[..., Any], after: Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]
) -> Callable[..., Any]:
    """*view*, sync or async as it was, answering ``after(result, args, kwargs)`` once it
    returned *result* (a view that raised calls nothing)."""
    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_view(*args: Any, **kwargs: Any) -> Any:
            return after(await view(*args, **kwargs), args, kwargs)

        return async_view

    @functools.wraps(view)
    def sync_view(*args: Any, **kwargs: Any) -> Any:
        return after(view(*args, **kwargs), args, kwargs)

    return sync_view


WrapperT = TypeVar("WrapperT", bound=Callable[..., Any])


def with_resolved_signature(wrapper: WrapperT, view: Callable[..., Any]) -> WrapperT:
    """*wrapper*, showing *view*'s signature with its string annotations evaluated.

    FastAPI and django-ninja read an endpoint's parameters from its signature. Some resolve
    string annotations (``from __future__ import annotations``) in the globals of the function
    they are given, the wrapper's here, where the view's types are unknown (django-ninja, and
    the FastAPI releases that go with Starlette 0.37): a ``Response`` parameter would become a
    required body field.
    """
    # A name imported only for type checkers cannot be evaluated: the text stays, as before.
    with contextlib.suppress(Exception):
        wrapper.__signature__ = inspect.signature(view, eval_str=True)  # type: ignore[attr-defined]
    return wrapper


def view_arguments(view: Callable[..., Any], given: set[str]) -> frozenset[str] | None:
    """The names a decorated view's callables may declare: *given* and the view's parameters;
    None (any name) when the view takes ``**kwargs`` or has no signature to read."""
    try:
        parameters = inspect.signature(view).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(given | {p.name for p in parameters})


def _callable_name(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", None) or type(func).__qualname__


#: The keyword arguments of well-known blinker signals (blinker signals do not declare them).
BLINKER_SIGNAL_ARGUMENTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("flask.signals", "template_rendered"): ("template", "context"),
    ("flask.signals", "before_render_template"): ("template", "context"),
    ("flask.signals", "request_started"): (),
    ("flask.signals", "request_finished"): ("response",),
    ("flask.signals", "request_tearing_down"): ("exc",),
    ("flask.signals", "got_request_exception"): ("exception",),
    ("flask.signals", "appcontext_tearing_down"): ("exc",),
    ("flask.signals", "appcontext_pushed"): (),
    ("flask.signals", "appcontext_popped"): (),
    ("flask.signals", "message_flashed"): ("message", "category"),
    ("flask_login.signals", "user_logged_in"): ("user",),
    ("flask_login.signals", "user_logged_out"): ("user",),
    ("flask_login.signals", "user_loaded_from_cookie"): ("user",),
    ("flask_login.signals", "user_loaded_from_request"): ("user",),
    ("flask_login.signals", "user_login_confirmed"): (),
    ("flask_login.signals", "user_unauthorized"): (),
    ("flask_login.signals", "user_needs_refresh"): (),
    ("flask_login.signals", "user_accessed"): (),
    ("flask_login.signals", "session_protected"): (),
}


def signal_arguments(
    signal: object, table: Mapping[tuple[str, str], tuple[str, ...]]
) -> tuple[str, frozenset[str] | None]:
    """How to name *signal* in errors, and the names its receivers are given (``sender`` and
    its keyword arguments), from *table* (module, attribute) -> arguments; None: not known.

    Only modules already imported are looked at: a signal from one not imported is not in it.
    """
    for (module_name, attribute), arguments in table.items():
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, attribute, None) is signal:
            return f"{attribute}", frozenset({"sender", *arguments})
    name = getattr(signal, "name", None)
    return (name if isinstance(name, str) else type(signal).__name__), None


def _describe_sender(sender: object) -> str:
    if sender is None:
        return ""
    name = getattr(sender, "__qualname__", None) or type(sender).__qualname__
    return f"sender {name}"


def precheck_goal_name(name: object) -> None:
    """Raise :class:`~goaltrack.InvalidGoal` now if no provider could accept *name*."""
    errors: list[InvalidGoal] = []
    for provider in PROVIDERS.values():
        try:
            Goal.create(provider, name, require_visitor=False)  # type: ignore[arg-type]
        except InvalidGoal as exc:
            errors.append(exc)
        else:
            return
    raise errors[0]


#: The arguments of Django's own signals (Django signals no longer declare theirs).
DJANGO_SIGNAL_ARGUMENTS: dict[tuple[str, str], tuple[str, ...]] = {
    ("django.contrib.auth.signals", "user_logged_in"): ("request", "user"),
    ("django.contrib.auth.signals", "user_logged_out"): ("request", "user"),
    ("django.contrib.auth.signals", "user_login_failed"): ("credentials", "request"),
    ("django.db.models.signals", "pre_init"): ("args", "kwargs"),
    ("django.db.models.signals", "post_init"): ("instance",),
    ("django.db.models.signals", "pre_save"): ("instance", "raw", "using", "update_fields"),
    ("django.db.models.signals", "post_save"): (
        "instance",
        "created",
        "raw",
        "using",
        "update_fields",
    ),
    ("django.db.models.signals", "pre_delete"): ("instance", "using", "origin"),
    ("django.db.models.signals", "post_delete"): ("instance", "using", "origin"),
    ("django.db.models.signals", "m2m_changed"): (
        "action",
        "instance",
        "reverse",
        "model",
        "pk_set",
        "using",
    ),
    ("django.db.models.signals", "class_prepared"): (),
    ("django.core.signals", "request_started"): ("environ", "scope"),
    ("django.core.signals", "request_finished"): (),
    ("django.core.signals", "got_request_exception"): ("request",),
}
