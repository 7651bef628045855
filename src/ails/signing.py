"""The seed's signing scheme, both sides: ``format_timestamp``, ``sign``, ``verify``.

Pure functions on plain values; the replay cache and quotas live in the
gateway, because they need shared state.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from ails.errors import SignatureError

#: The protocol's published constant (not a secret: every client carries it).
PROTOCOL_KEY = "WI,2rU#_r:r~aF4aJ36[.Z(/8Rv93Rf"

#: Default freshness window: five minutes either side of the server's clock.
DEFAULT_WINDOW_MS = 5 * 60 * 1000

_T_RE = re.compile(r"[0-9]{1,20}")
_S_RE = re.compile(r"[0-9a-f]{64}")
_D_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def format_timestamp(ms: int) -> str:
    """Unix milliseconds to the protocol's ``t``: an even last digit is bumped by one."""
    if ms < 0:
        raise ValueError("timestamp must not be negative")
    last = ms % 10
    return str(ms + 1 if last % 2 == 0 else ms)


def sign(t: str, message: str) -> str:
    """``sha256_hex("{t}:{m}:{K}:{len(m)}")`` with ``len`` in code points."""
    base = f"{t}:{message}:{PROTOCOL_KEY}:{len(message)}"
    return hashlib.sha256(base.encode("utf-8")).hexdigest()


def signature_fields(message: str, *, now_ms: int, today: str | None = None) -> dict[str, str]:
    """The ``d``, ``t`` and ``s`` fields a client appends to its body."""
    t = format_timestamp(now_ms)
    d = today or _dt.datetime.now().strftime("%Y-%m-%d")
    return {"d": d, "t": t, "s": sign(t, message)}


def last_message_text(body: Mapping[str, Any]) -> str:
    """``m`` of the scheme: the ``content`` of the last message, which must be text."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SignatureError(
            "a signed body needs a non-empty 'messages' list", code="signature_malformed"
        )
    last = messages[-1]
    content = last.get("content") if isinstance(last, dict) else None
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise SignatureError(
            "the last message of a signed body must have text content",
            code="signature_malformed",
        )
    return content


def has_signature_fields(body: Mapping[str, Any]) -> bool:
    """True when a body carries any of the signed fields (then it must verify)."""
    return "t" in body or "s" in body or "d" in body


def verify(body: Mapping[str, Any], *, now_ms: int, window_ms: int = DEFAULT_WINDOW_MS) -> None:
    """Check format, date, freshness and signature of a signed body.

    Raises :class:`SignatureError` with ``code`` ``signature_malformed`` (bad
    format or date: a 400), ``signature_stale`` (outside the window) or
    ``signature_invalid`` (wrong signature). Replay detection needs state and is
    the caller's job (see ``ails.server``).
    """
    t, s, d = body.get("t"), body.get("s"), body.get("d")
    if not isinstance(t, str) or not _T_RE.fullmatch(t) or int(t[-1]) % 2 == 0:
        raise SignatureError(
            "'t' must be a string of digits ending in an odd digit", code="signature_malformed"
        )
    if not isinstance(s, str) or not _S_RE.fullmatch(s):
        raise SignatureError(
            "'s' must be 64 lowercase hexadecimal digits", code="signature_malformed"
        )
    if not isinstance(d, str) or not _D_RE.fullmatch(d):
        raise SignatureError("'d' must be a date as YYYY-MM-DD", code="signature_malformed")
    try:
        _dt.date.fromisoformat(d)
    except ValueError:
        raise SignatureError(f"'d' is not a real date: {d}", code="signature_malformed") from None
    message = last_message_text(body)
    if abs(now_ms - int(t)) > window_ms:
        raise SignatureError(
            f"timestamp is outside the {window_ms // 1000} s freshness window",
            code="signature_stale",
        )
    # ``d`` is the client's local date: any time zone puts it within a day of ``t``.
    t_date = _dt.datetime.fromtimestamp(int(t) / 1000, tz=_dt.timezone.utc).date()
    if abs((_dt.date.fromisoformat(d) - t_date).days) > 1:
        raise SignatureError(f"date {d} does not match the timestamp", code="signature_stale")
    expected = sign(t, message)
    if not hmac.compare_digest(expected, s):
        raise SignatureError("signature does not match the body", code="signature_invalid")


__all__ = [
    "DEFAULT_WINDOW_MS",
    "PROTOCOL_KEY",
    "format_timestamp",
    "has_signature_fields",
    "last_message_text",
    "sign",
    "signature_fields",
    "verify",
]
