"""Goals and their rules: the one place where a goal is validated and normalized.

:meth:`Goal.create` applies the provider's own rules (``providers.py``) in the caller's thread, so
that a goal the API would refuse is an :class:`InvalidGoal` at the call site, never a silent 400
in a background thread. Delivery never re-validates.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from goaltrack.providers import (
    METADATA_KEY_PATTERN,
    METADATA_MAX_KEYS,
    METADATA_VALUE_MAX_CHARS,
    Provider,
)

__all__ = ["Goal", "InvalidGoal", "MetadataValue", "overlong_keys", "sanitize_value"]

#: What a metadata value may be before it is turned into the string the API stores.
MetadataValue = str | int | float | bool | Decimal | uuid.UUID | _dt.date | None

_TIMEZONE = re.compile(r"[A-Za-z0-9_+\-/:]{1,64}")
#: A value without any of these characters has nothing to clean (the fast path).
_MAYBE_UNSAFE = re.compile(r"""[<>'"&:=]""")
_SCRIPT_OR_STYLE_BLOCK = re.compile(
    r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL
)
_TAG = re.compile(r"</?[A-Za-z!][^>]*>")
_UNSAFE_LEFTOVERS = re.compile(r"""[<>'"&]|javascript:|\bon\w+\s*=""", re.IGNORECASE)


class InvalidGoal(ValueError):
    """A goal the provider's API would refuse; the message names the value and the rule."""

    def __init__(self, message: str, *, field: str, rule: str, repairable: bool = False) -> None:
        super().__init__(f"{message} (rule: {rule})")
        self.field = field
        self.rule = rule
        self.repairable = repairable
        """True when the provider's own rules can repair the goal: a metadata value over the
        length limit, which the providers' JavaScript SDKs cut (see :func:`overlong_keys`)."""

    @property
    def problem(self) -> str:
        """The message without the rule."""
        return str(self).removesuffix(f" (rule: {self.rule})")


def sanitize_value(value: str) -> str:
    """Remove HTML and script content from a metadata value, as the providers do on their side.

    ``<script>``/``<style>`` blocks go with their content, then any tag, then the characters
    ``< > ' " &``, ``javascript:`` and ``on…=`` event-handler prefixes.
    """
    if _MAYBE_UNSAFE.search(value) is None:
        return value
    cleaned = _TAG.sub("", _SCRIPT_OR_STYLE_BLOCK.sub("", value))
    while True:  # removing one piece can join two halves into a new one: repeat until stable
        again = _UNSAFE_LEFTOVERS.sub("", cleaned)
        if again == cleaned:
            return cleaned
        cleaned = again


@dataclass(slots=True)
class Goal:
    """A validated, normalized goal for one provider, ready to be delivered as is.

    Build one with :meth:`Goal.create`; treat it as immutable. (Not a frozen dataclass: a
    frozen ``__init__`` costs a microsecond on every ``track`` call.)

    What a transport needs of it it needs of a :class:`~goaltrack.Payment` too: ``kind``,
    ``idempotent``, ``path``, ``body()``, ``label`` and ``describe()``.
    """

    kind: ClassVar[str] = "goal"
    idempotent: ClassVar[bool] = False
    """The goals API has no idempotency key: a goal sent twice counts twice."""

    provider: Provider
    name: str
    visitor_id: str | None = None
    session_id: str | None = None
    metadata: Mapping[str, str] | None = None
    description: str | None = None
    timezone: str | None = None

    @classmethod
    def create(
        cls,
        provider: Provider,
        name: str,
        *,
        visitor_id: str | None = None,
        session_id: str | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        description: str | None = None,
        timezone: str | None = None,
        truncate_metadata: bool = False,
        require_visitor: bool = True,
    ) -> Goal:
        """Validate and normalize with the provider's rules; raise :class:`InvalidGoal` if broken.

        ``require_visitor=False`` checks everything but the presence of a visitor id: for
        callers that want bad names caught even when there is no visitor to send the goal for.
        """
        return cls(
            provider,
            _check_name(provider, name),
            _check_visitor_id(provider, visitor_id, require_visitor),
            None if session_id is None else _check_session_id(provider, session_id),
            _check_metadata(metadata, truncate_metadata) if metadata else None,
            None if description is None else _check_description(provider, description),
            None if timezone is None else _check_timezone(provider, timezone),
        )

    def replace(self, **changes: Any) -> Goal:
        """A copy with *changes* (``metadata=...``, ``name=...``), for ``before_send`` hooks;
        the tracker validates the copy again before sending it."""
        return dataclasses.replace(self, **changes)

    def body(self) -> dict[str, Any]:
        """The JSON body the provider's create-goal endpoint takes."""
        provider = self.provider
        body: dict[str, Any] = {"name": self.name}
        if self.visitor_id is not None:
            body[provider.visitor_field] = self.visitor_id
        if self.session_id is not None and provider.session_field is not None:
            body[provider.session_field] = self.session_id
        if self.metadata:
            body["metadata"] = dict(self.metadata)
        if self.description is not None:
            body["description"] = self.description
        if self.timezone is not None:
            body["timezone"] = self.timezone
        return body

    @property
    def path(self) -> str:
        """The endpoint's path, after the API's base URL."""
        return self.provider.goals_path

    @property
    def label(self) -> str:
        """The goal in a log line: ``goal 'signup'``."""
        return f"goal {self.name!r}"

    def describe(self) -> str:
        """The goal for the debug log: provider, name, visitor, session and metadata."""
        session = f" session {self.session_id!r}" if self.session_id is not None else ""
        return (
            f"{self.provider.name} goal {self.name!r} for visitor {self.visitor_id!r}{session} "
            f"metadata {dict(self.metadata or {})!r}"
        )

    def __repr__(self) -> str:
        return (
            f"Goal(provider={self.provider.name!r}, name={self.name!r}, "
            f"visitor_id={self.visitor_id!r}, metadata={dict(self.metadata or {})!r})"
        )


def _check_name(provider: Provider, name: object) -> str:
    if type(name) is str:
        known = _known_good_names.get(id(provider))
        if known is not None and known[0] is provider:
            normalized = known[1].get(name)
            if normalized is not None:
                return normalized
    normalized = _checked_name(provider, name)
    if type(name) is str:
        known = _known_good_names.get(id(provider))
        if known is None or known[0] is not provider:
            known = _known_good_names[id(provider)] = (provider, {})
        if len(known[1]) < _KNOWN_GOOD_NAMES_MAX:
            known[1][name] = normalized
    return normalized


#: Goal names already checked, per provider (by identity; the entry holds the provider, so its
#: id cannot be reused): apps track a handful of names, so a dict lookup beats the rules.
_known_good_names: dict[int, tuple[Provider, dict[str, str]]] = {}
_KNOWN_GOOD_NAMES_MAX = 1024


def _checked_name(provider: Provider, name: object) -> str:
    if not isinstance(name, str):
        raise InvalidGoal(
            f"goal name must be a string, got {type(name).__name__}",
            field="name",
            rule=provider.name_rule,
        )
    normalized = name.lower().replace(" ", "_") if provider.normalize_name else name
    if provider.name_pattern.fullmatch(normalized) is None:
        hint = ""
        suggestion = name.strip().lower().replace(" ", "_")
        if suggestion != normalized and provider.name_pattern.fullmatch(suggestion):
            hint = f"; did you mean {suggestion!r}?"
        raise InvalidGoal(
            f"invalid goal name {name[:80]!r} for {provider.name}{hint}",
            field="name",
            rule=provider.name_rule,
        )
    if normalized in provider.reserved_names:
        raise InvalidGoal(
            f"goal name {normalized!r} is reserved by {provider.name}",
            field="name",
            rule="reserved names: " + ", ".join(sorted(provider.reserved_names)),
        )
    return normalized


def _check_visitor_id(provider: Provider, visitor_id: object, required: bool) -> str | None:
    if visitor_id is None or visitor_id == "":
        if required and provider.visitor_required:
            raise InvalidGoal(
                f"{provider.name} needs the visitor id (the {provider.visitor_cookie!r} cookie "
                "its tracking script sets); none was given",
                field="visitor_id",
                rule=f"{provider.visitor_field} is required",
            )
        return None
    if not isinstance(visitor_id, str) or provider.visitor_id_pattern.fullmatch(visitor_id) is None:
        raise InvalidGoal(
            f"visitor id {str(visitor_id)[:80]!r} is not a well-formed {provider.name} visitor id",
            field="visitor_id",
            rule=f"the value of the {provider.visitor_cookie!r} cookie",
        )
    return visitor_id


def _check_session_id(provider: Provider, session_id: object) -> str | None:
    if session_id is None or session_id == "" or provider.session_field is None:
        return None  # providers without a session field in the body: nothing to send
    pattern = provider.session_id_pattern
    if not isinstance(session_id, str) or (pattern and pattern.fullmatch(session_id) is None):
        raise InvalidGoal(
            f"session id {str(session_id)[:80]!r} is not a well-formed {provider.name} session id",
            field="session_id",
            rule=f"the value of the {provider.session_cookie!r} cookie",
        )
    return session_id


def _check_metadata(metadata: object, truncate: bool) -> dict[str, str]:
    rule_keys = "keys: lowercase letters, digits, '_' and '-', 1 to 64 characters"
    if type(metadata) is not dict and not isinstance(metadata, Mapping):
        raise InvalidGoal(
            f"metadata must be a mapping of names to values, got {type(metadata).__name__}",
            field="metadata",
            rule="metadata is a flat object",
        )
    checked: dict[str, str] = {}
    for key, value in metadata.items():
        if key in _known_good_keys:
            pass
        elif isinstance(key, str) and METADATA_KEY_PATTERN.fullmatch(key) is not None:
            if len(_known_good_keys) < _KNOWN_GOOD_KEYS_MAX:
                _known_good_keys.add(key)
        else:
            suggestion = str(key).strip().lower().replace(" ", "_")
            hint = (
                f"; did you mean {suggestion!r}?"
                if METADATA_KEY_PATTERN.fullmatch(suggestion)
                else ""
            )
            raise InvalidGoal(
                f"invalid metadata key {str(key)[:80]!r}{hint}", field="metadata", rule=rule_keys
            )
        value_type = type(value)
        text = value if value_type is str else _metadata_text(key, value)
        if text is None:
            continue  # None means "not set": the key is left out
        if not text.isascii():
            _check_encodable(text, f"metadata value for {key!r}", "metadata")
        # The API checks the length as sent, before it removes HTML, so we do too.
        if len(text) > _ASCII_SAFE_LENGTH and _js_length(text) > METADATA_VALUE_MAX_CHARS:
            if not truncate:
                raise InvalidGoal(
                    f"metadata value for {key!r} is {_js_length(text)} characters long",
                    field="metadata",
                    rule=f"values are at most {METADATA_VALUE_MAX_CHARS} characters, counted as "
                    "JavaScript does (UTF-16 units; pass truncate_metadata=True to cut them)",
                    repairable=True,
                )
            text = _js_truncate(text, METADATA_VALUE_MAX_CHARS)
        # Digits, and letters and digits only, have nothing to clean: skip the pattern search.
        checked[key] = text if value_type is int or text.isalnum() else sanitize_value(text)
    if len(checked) > METADATA_MAX_KEYS:
        raise InvalidGoal(
            f"metadata has {len(checked)} keys",
            field="metadata",
            rule=f"at most {METADATA_MAX_KEYS} keys",
        )
    return checked


def overlong_keys(metadata: Mapping[str, object]) -> list[str]:
    """The keys of *metadata* whose values, as text, are over the provider's length limit."""
    keys = []
    for key, value in metadata.items():
        try:
            text = _metadata_text(str(key), value)
        except InvalidGoal:
            continue
        if text is not None and _js_length(text) > METADATA_VALUE_MAX_CHARS:
            keys.append(str(key))
    return keys


#: A string of at most this many code points cannot exceed 255 UTF-16 units (2 units each at most).
_ASCII_SAFE_LENGTH = METADATA_VALUE_MAX_CHARS // 2


def _js_length(text: str) -> int:
    """Length as the providers' JavaScript backends count it: UTF-16 code units."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def _js_truncate(text: str, limit: int) -> str:
    """Cut to *limit* UTF-16 units without splitting a character."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return text[:index]
    return text


#: Metadata keys already seen to be valid: apps use a handful, so a set lookup beats the regex.
_known_good_keys: set[str] = set()
_KNOWN_GOOD_KEYS_MAX = 1024


def _check_encodable(text: str, what: str, field: str) -> None:
    # A lone surrogate (a JSON "\\ud800" escape, say) passes every other rule but cannot be
    # sent as UTF-8: refuse it here rather than fail in the background.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidGoal(
            f"{what} contains a lone surrogate, which is not valid Unicode text",
            field=field,
            rule="text must be valid Unicode (encodable as UTF-8)",
        ) from None


def _metadata_text(key: str, value: object) -> str | None:
    if isinstance(value, str):
        return value
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # as JavaScript's String(2.0) writes it: "2"
    if isinstance(value, (int, float, Decimal, uuid.UUID)):
        try:
            return str(value)
        except ValueError:  # an int of more than 4300 digits: far over the length limit anyway
            raise InvalidGoal(
                f"metadata value for {key!r} is a number too long to send",
                field="metadata",
                rule=f"values are at most {METADATA_VALUE_MAX_CHARS} characters",
            ) from None
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    raise InvalidGoal(
        f"metadata value for {key!r} is a {type(value).__name__}",
        field="metadata",
        rule="values are strings, numbers or booleans; nested objects and lists are refused",
    )


def _check_description(provider: Provider, description: object) -> str | None:
    if description is None:
        return None
    if not provider.accepts_description:
        raise InvalidGoal(
            f"{provider.name} goals take no description",
            field="description",
            rule="description is a DataFast field",
        )
    if not isinstance(description, str):
        raise InvalidGoal(
            f"description must be a string, got {type(description).__name__}",
            field="description",
            rule="description is a string",
        )
    if not description.isascii():
        _check_encodable(description, "description", "description")
    return sanitize_value(description)


def _check_timezone(provider: Provider, timezone: object) -> str | None:
    if timezone is None:
        return None
    if not provider.accepts_timezone:
        raise InvalidGoal(
            f"{provider.name} goals take no timezone",
            field="timezone",
            rule="timezone is a Flowsery field",
        )
    if not isinstance(timezone, str) or _TIMEZONE.fullmatch(timezone) is None:
        raise InvalidGoal(
            f"timezone {str(timezone)[:80]!r} is not an IANA time zone name",
            field="timezone",
            rule="an IANA name such as 'Europe/Paris'",
        )
    return timezone
