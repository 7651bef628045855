"""OpenAI-style error bodies, and which HTTP status each ails error becomes.

Every refusal the gateway makes is ``{"error": {"message", "type", "code",
"param"}}`` with a status the official SDK maps to the right exception class.
The mapping for upstream failures follows one rule: a fault of the *client's*
request keeps a 4xx status; a fault of an upstream, or of the gateway's own
configuration (an upstream refusing the gateway's key), is a 5xx, because the
client cannot fix it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from ails.errors import (
    CONNECTION_FAILED,
    AilsError,
    AuthFailed,
    BadRequest,
    ConfigError,
    NotFound,
    ProtocolError,
    ProviderError,
    RateLimited,
    SignatureError,
    Timeout,
)
from ails.wire import error_event, error_json

JSON_TYPE = "application/json"
#: The code of a refusal because the embedded model's line is full (local/slots.py).
QUEUE_FULL = "queue_full"
#: The code of a refusal because an upstream refused the gateway's own key.
UPSTREAM_AUTH_FAILED = "upstream_auth_failed"


class GatewayError(Exception):
    """A refusal to answer with ``status`` and an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or default_type(status)
        self.code = code
        self.param = param
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "code": self.code,
                "param": self.param,
            }
        }

    def body_json(self) -> bytes:
        return error_json(self.message, type=self.type, code=self.code, param=self.param)


def default_type(status: int) -> str:
    """OpenAI's ``error.type`` for a status (what its own API sends)."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_response(err: GatewayError, *, request_id: str | None = None) -> web.Response:
    headers = dict(err.headers or {})
    if request_id is not None:
        headers["x-request-id"] = request_id
    return web.Response(
        status=err.status, body=err.body_json(), content_type=JSON_TYPE, headers=headers
    )


class Redactor:
    """Removes secrets (upstream keys, credentials in upstream URLs) from text.

    Upstreams sometimes echo part of a key in their error messages, and a
    connection error names the URL; everything the gateway sends to a client or
    writes to a log about an upstream passes through here first.
    """

    def __init__(self, secrets: Iterable[str] = (), names: Mapping[str, str] | None = None) -> None:
        # Longest first, so a secret that contains another is removed whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        #: Upstream addresses (URL, host:port) shown as the upstream's display
        #: name: a client learns which upstream failed, not where it lives.
        self.names = sorted((names or {}).items(), key=lambda kv: len(kv[0]), reverse=True)
        # Called on every access line (server/logsink.py: its path and request
        # id are the client's, and may quote a key), which almost never holds
        # anything to remove. So a text is first searched only for the needles
        # that contain no other needle: every needle contains one of them
        # (an upstream's URL holds its host:port), so when none is there,
        # nothing is, and the text is returned as it came.
        needles = {*self.secrets, *(address for address, _ in self.names)}
        self._gates = tuple(n for n in needles if not any(o != n and o in n for o in needles))

    def __call__(self, text: str) -> str:
        for gate in self._gates:
            if gate in text:
                return self._remove(text)
        return text

    def _remove(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        for address, name in self.names:
            if address in text:
                text = text.replace(address, name)
        return text


#: The HTTP status of each way a signed body can fail (``SignatureError.code``):
#: a body that is not even well formed is the client's bad request; one that
#: is well formed but not (or no longer) valid is refused authentication.
SIGNATURE_STATUS: Mapping[str, int] = {
    "signature_malformed": 400,
    "signature_stale": 401,
    "signature_invalid": 401,
    "signature_replayed": 401,
}


def signature_refusal(exc: SignatureError, prefix: str = "") -> GatewayError:
    return GatewayError(
        SIGNATURE_STATUS.get(exc.code or "", 401), prefix + exc.message, code=exc.code
    )


def from_ails_error(exc: AilsError, redact: Redactor) -> GatewayError:
    """The gateway's answer for an error raised before the response started."""
    message = redact(exc.message)
    provider = getattr(exc, "provider", None)
    where = f"{provider}: " if provider else ""
    if isinstance(exc, SignatureError):
        return signature_refusal(exc)
    if isinstance(exc, AuthFailed):
        # The upstream refused *our* key: the client cannot fix that, and the
        # upstream's message may quote the key, so it is not passed on.
        return GatewayError(
            502,
            f"upstream {provider or '?'} refused the gateway's credentials"
            f" (HTTP {exc.status}); the gateway's upstream key is missing or wrong",
            code=UPSTREAM_AUTH_FAILED,
        )
    if isinstance(exc, RateLimited):
        headers = None
        if exc.retry_after is not None:
            headers = {"retry-after": str(max(1, math.ceil(exc.retry_after)))}
        return GatewayError(
            429, f"{where}{message}", code=exc.code or "rate_limited", headers=headers
        )
    if isinstance(exc, NotFound):
        return GatewayError(404, f"{where}{message}", code=exc.code or "model_not_found")
    if isinstance(exc, BadRequest):
        status = exc.status if exc.status is not None and 400 <= exc.status < 500 else 400
        return GatewayError(status, f"{where}{message}", code=exc.code, param=exc.param)
    if isinstance(exc, Timeout):
        return GatewayError(504, f"{where}{message}", code=exc.code or "timeout")
    if isinstance(exc, ProtocolError):
        return GatewayError(502, f"{where}{message}", code=exc.code or "upstream_protocol_error")
    if isinstance(exc, ProviderError) and exc.code == QUEUE_FULL:
        # A busy model with a full line (--max-queue): the client may try again soon.
        retry = max(1, math.ceil(exc.retry_after or 1))
        return GatewayError(
            503, f"{where}{message}", code=QUEUE_FULL, headers={"retry-after": str(retry)}
        )
    if isinstance(exc, ProviderError) and exc.code == CONNECTION_FAILED:
        # A connection-level failure: the library's text names the socket
        # address; the client learns which upstream failed, the log the rest.
        return GatewayError(
            502,
            f"{where}the upstream could not be reached or dropped the connection",
            code="upstream_unavailable",
        )
    if isinstance(exc, ProviderError):
        status_note = f" (HTTP {exc.status})" if exc.status is not None else ""
        return GatewayError(
            502, f"{where}{message}{status_note}", code=exc.code or "upstream_unavailable"
        )
    if isinstance(exc, ConfigError):
        return GatewayError(503, message, code="backend_unavailable")
    return GatewayError(502, f"{where}{message}", code=exc.code or "upstream_error")


def stream_error_event(exc: BaseException, redact: Redactor) -> bytes:
    """The in-band event that ends a stream that failed after it started.

    The event itself is :func:`ails.wire.error_event`; this chooses what
    it says, redacted.
    """
    if isinstance(exc, AilsError):
        err = from_ails_error(exc, redact)
        message, code, type_ = err.message, err.code, err.type
    else:
        message, code, type_ = "the answer failed mid-stream", "internal_error", "server_error"
    return error_event(message, type=type_, code=code)


__all__ = [
    "QUEUE_FULL",
    "SIGNATURE_STATUS",
    "UPSTREAM_AUTH_FAILED",
    "GatewayError",
    "Redactor",
    "default_type",
    "error_response",
    "from_ails_error",
    "signature_refusal",
    "stream_error_event",
]
