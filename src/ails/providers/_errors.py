"""An upstream's error answer as an ails error: its own message and code kept,
its ``retry-after`` read (shared by every HTTP provider)."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import msgspec

from ails.errors import ProviderError, error_for_status


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def error_from_body(
    status: int, raw: bytes, *, provider: str, retry_after: float | None = None
) -> ProviderError:
    """Keep the upstream's own message and body; fall back to the raw text."""
    body: Any
    message = ""
    code = None
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        body = raw.decode("utf-8", "replace")
        message = body.strip()[:500]
    else:
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            message = str(err.get("message") or "")
            code = err.get("code") if isinstance(err.get("code"), str) else None
        elif isinstance(err, str):
            message = err
        elif isinstance(body, dict) and isinstance(body.get("message"), str):
            message = body["message"]
    if not message:
        message = f"upstream answered HTTP {status}"
    return error_for_status(
        status, message, provider=provider, body=body, code=code, retry_after=retry_after
    )


__all__ = ["error_from_body", "parse_retry_after"]
