"""One error tree for everything ails raises.

Every error says what went wrong in words a user can act on, and keeps what a
program needs to decide what to do next: the HTTP status, the provider, whether
a retry may help, and the upstream's own message and body.
"""

from __future__ import annotations

from typing import Any

#: ``code`` of a failure at the connection level (refused, reset, cut): the
#: message then names socket addresses, which a gateway does not pass on.
CONNECTION_FAILED = "connection_failed"


class AilsError(Exception):
    """Root of every error ails raises on purpose."""

    #: A short machine-readable code (OpenAI-style ``error.code``), when known.
    code: str | None = None

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ConfigError(AilsError):
    """The configuration asks for something that cannot work (bad value, missing setting)."""


class ProviderError(AilsError):
    """A backend answered with an error, or could not be reached.

    ``status`` is the upstream HTTP status (``None`` when there was no response),
    ``retryable`` whether trying again may help, ``body`` the upstream's error
    body as parsed JSON (or text) so nothing the upstream said is lost, and
    ``param`` the request field at fault when it is known (OpenAI's
    ``error.param``, e.g. ``"messages[1].content[0]"``).
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        provider: str | None = None,
        retryable: bool | None = None,
        code: str | None = None,
        body: Any = None,
        retry_after: float | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.param = param
        self.provider = provider
        if retryable is not None:
            self.retryable = retryable
        self.body = body
        #: Seconds the upstream asked us to wait (``retry-after``), if it said.
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f"{self.provider}: " if self.provider else ""
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{where}{self.message}{status}"


class BadRequest(ProviderError):
    """The request itself is wrong (400/413/422): fix it, do not retry it."""


class AuthFailed(ProviderError):
    """Missing or rejected credentials (401/403)."""


class NotFound(ProviderError):
    """Unknown model, provider or endpoint (404)."""


class RateLimited(ProviderError):
    """Too many requests or quota spent (429)."""

    retryable = True


class UpstreamUnavailable(ProviderError):
    """The upstream failed or could not be reached (connection error, 408/409/5xx)."""

    retryable = True


class ProtocolError(AilsError):
    """The other side broke the wire protocol: not SSE, bad JSON, a stream cut
    before its end signal, a line over the size limit."""

    def __init__(self, message: str, *, provider: str | None = None, code: str | None = None):
        super().__init__(message, code=code)
        self.provider = provider

    def __str__(self) -> str:
        return f"{self.provider}: {self.message}" if self.provider else self.message


class Timeout(AilsError):
    """A connect, total or idle-content deadline passed.

    ``kind`` is ``"connect"``, ``"total"`` or ``"idle"``.
    """

    retryable = True

    def __init__(self, message: str, *, kind: str, provider: str | None = None) -> None:
        super().__init__(message, code=f"timeout_{kind}")
        self.kind = kind
        self.provider = provider

    def __str__(self) -> str:
        return f"{self.provider}: {self.message}" if self.provider else self.message


class SignatureError(AilsError):
    """A signed-protocol body failed verification.

    ``code`` says which check failed: ``signature_malformed``,
    ``signature_stale``, ``signature_invalid`` or ``signature_replayed``.
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, code=code)


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str | None = None,
    body: Any = None,
    code: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """Map an HTTP status to the right class, with the retry policy of style.md:
    408, 409, 429 and every 5xx may be retried; other 4xx may not."""
    cls: type[ProviderError]
    if status == 429:
        cls = RateLimited
    elif status in (401, 403):
        cls = AuthFailed
    elif status == 404:
        cls = NotFound
    elif status in (408, 409) or status >= 500:
        cls = UpstreamUnavailable
    elif 400 <= status < 500:
        cls = BadRequest
    else:
        cls = ProviderError
    return cls(
        message,
        status=status,
        provider=provider,
        body=body,
        code=code,
        retry_after=retry_after,
    )


__all__ = [
    "CONNECTION_FAILED",
    "AilsError",
    "AuthFailed",
    "BadRequest",
    "ConfigError",
    "NotFound",
    "ProtocolError",
    "ProviderError",
    "RateLimited",
    "SignatureError",
    "Timeout",
    "UpstreamUnavailable",
    "error_for_status",
]
