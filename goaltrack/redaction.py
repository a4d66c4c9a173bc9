"""The one redaction every text leaving the process goes through: logs, stored reasons, CLI output.

An API that echoes the request back (a proxy's error page, a debugging endpoint) can put the
``Authorization`` header into an error body, and error bodies become log lines, outbox dead
letters and command output. :func:`redact` removes every API key a tracker in this process was
given (:func:`remember_secret`) and any ``Bearer …`` token, strips control characters (CR, LF,
ESC: no forged log lines, no terminal escapes) and bounds the length.
"""

from __future__ import annotations

import hashlib
import re
import threading

__all__ = ["REDACTED", "key_fingerprint", "redact", "remember_secret"]

REDACTED = "<redacted>"
#: The longest text from the network kept in a reason, a log line or a stored failure.
MAX_TEXT_CHARS = 300

_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;}\]]+")
# C0 and C1 control characters and DEL; a tab becomes a space rather than vanishing.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
#: Shorter strings are not treated as secrets (they would redact ordinary words).
_MIN_SECRET_CHARS = 8


def remember_secret(secret: str | None) -> None:
    """Redact *secret* from every text that :func:`redact` sees from now on in this process."""
    if secret and len(secret) >= _MIN_SECRET_CHARS:
        with _secrets_lock:
            _secrets.add(secret)


def redact(text: object, limit: int | None = MAX_TEXT_CHARS) -> str:
    """*text* without keys, bearer tokens or control characters, cut to *limit* characters."""
    cleaned = str(text)
    if _secrets:
        for secret in tuple(_secrets):
            if secret in cleaned:
                cleaned = cleaned.replace(secret, REDACTED)
    cleaned = _BEARER.sub(lambda m: m.group(1) + REDACTED, cleaned)
    cleaned = _CONTROL.sub(" ", cleaned.replace("\t", " "))
    if limit is not None and len(cleaned) > limit:
        cleaned = cleaned[: limit - 1] + "…"
    return cleaned


def key_fingerprint(api_key: str) -> str:
    """A short, non-reversible identity of *api_key*: equal keys, equal fingerprints."""
    return hashlib.sha256(b"goaltrack-key:" + api_key.encode()).hexdigest()[:16]
