"""What the HTTP providers share: one aiohttp session, sending, error mapping.
The stream of chunks with its deadlines is in ``_stream``.

aiohttp, not httpx: measured on this machine, httpx 0.28's pool spends ~9 ms
of CPU per request at 64 concurrent connections, while aiohttp holds up and
streams 1.7x faster (docs/architecture.md). Reads are bulk (``readany``),
lines are split in bulk by :mod:`ails.sse`, and chunks are decoded by msgspec
straight into :class:`ails.types.Chunk`.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import msgspec

from ails.errors import (
    CONNECTION_FAILED,
    AilsError,
    ProtocolError,
    ProviderError,
    Timeout,
    UpstreamUnavailable,
    error_for_status,
)
from ails.providers._stream import (
    _CONNECTION_ERRORS,
    SSEChunkStream,
    in_band_error,
)
from ails.providers.base import Provider, Reply, Timeouts
from ails.types import Chunk, Completion

log = logging.getLogger("ails.http")

T = TypeVar("T")

#: An error body larger than this is cut: it is for a message, not a payload.
MAX_ERROR_BODY = 64 * 1024
#: The library's pool cap per provider instance (a gateway sets none).
DEFAULT_MAX_CONNECTIONS = 256
#: A non-streamed completion larger than this is refused (a hostile upstream
#: must not make us buffer without bound).
MAX_JSON_BODY = 32 * 1024 * 1024

_completion_decoder = msgspec.json.Decoder(Completion, strict=False)
_encode = msgspec.json.Encoder().encode


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


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """Read at most ``limit`` bytes of a body; say whether it was cut."""
    parts: list[bytes] = []
    size = 0
    while True:
        data = await resp.content.readany()
        if not data:
            return b"".join(parts), False
        parts.append(data)
        size += len(data)
        if size > limit:
            return b"".join(parts)[:limit], True


class HTTPProvider(Provider):
    """A provider that POSTs JSON to ``{base_url}/chat/completions``.

    ``max_connections`` caps the connection pool (``None``: no cap, what a
    gateway uses, since its clients' and the upstream's limits bound it). A
    request that finds the cap reached waits for a free connection at most the
    connect timeout (aiohttp counts the wait in ``connect``), and every such
    wait is counted in ``pool_waits`` and logged, never silent.
    """

    def __init__(
        self,
        *,
        base_url: str,
        timeouts: Timeouts | None = None,
        headers: dict[str, str] | None = None,
        max_connections: int | None = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        super().__init__(timeouts=timeouts)
        if max_connections is not None and (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or max_connections < 1
        ):
            raise AilsError(f"max_connections must be a whole number >= 1, not {max_connections!r}")
        self.base_url = base_url.rstrip("/")
        self.extra_headers = dict(headers or {})
        self.max_connections = max_connections
        #: Requests that waited for a free connection because the cap was reached.
        self.pool_waits = 0
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            traces = []
            if self.max_connections is not None:
                # Only with a cap: a trace costs a few signals on every request.
                trace = aiohttp.TraceConfig()
                trace.on_connection_queued_start.append(self._on_pool_wait)
                traces.append(trace)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections or 0, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.timeouts.connect, connect=self.timeouts.connect
                ),
                auto_decompress=True,
                trace_configs=traces or None,
            )
            self._session_loop = loop
        return self._session

    async def _on_pool_wait(self, session: Any, context: Any, params: Any) -> None:
        self.pool_waits += 1
        if self.pool_waits & (self.pool_waits - 1) == 0:  # 1, 2, 4, 8...: not one line each
            log.warning(
                "%s: all %s connections are busy; requests wait (%d so far)",
                self.name,
                self.max_connections,
                self.pool_waits,
            )

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def request_headers(self) -> dict[str, str]:
        """Headers for one request; subclasses add auth."""
        return dict(self.extra_headers)

    def error_from_response(
        self, status: int, raw: bytes, retry_after: float | None
    ) -> ProviderError:
        """An error answer as an ails error; a provider whose upstream shapes
        its errors otherwise (Anthropic's ``error.type``) overrides this."""
        return error_from_body(status, raw, provider=self.name, retry_after=retry_after)

    async def post(
        self, path: str, body: dict[str, Any], *, streaming: bool
    ) -> tuple[aiohttp.ClientResponse, float]:
        """Send the request, wait for the headers, map failures to the error tree.

        A streamed answer's headers come before any content, so the idle limit
        applies to them; a whole answer's headers come after all of it, so only
        the total limit does.
        """
        url = f"{self.base_url}{path}"
        headers = self.request_headers()
        headers.setdefault("content-type", "application/json")
        started = asyncio.get_running_loop().time()
        first_byte_limit = (
            _min_opt(self.timeouts.idle, self.timeouts.total) if streaming else self.timeouts.total
        )
        try:
            resp = await _within(
                self.session().post(url, data=_encode(body), headers=headers), first_byte_limit
            )
        except aiohttp.ServerTimeoutError as exc:  # aiohttp's own: the connect limit
            raise Timeout(
                f"could not connect to {url} within {self.timeouts.connect} s",
                kind="connect",
                provider=self.name,
            ) from exc
        except asyncio.TimeoutError:
            raise Timeout(
                f"no response from {url} within {first_byte_limit:g} s",
                kind="idle" if first_byte_limit == self.timeouts.idle else "total",
                provider=self.name,
            ) from None
        except aiohttp.InvalidURL as exc:
            raise AilsError(f"invalid base_url for {self.name}: {url}") from exc
        except _CONNECTION_ERRORS as exc:
            raise UpstreamUnavailable(
                f"cannot reach {url}: {exc.__class__.__name__}: {exc}",
                provider=self.name,
                code=CONNECTION_FAILED,
            ) from exc
        if resp.status >= 400:
            try:
                raw, _ = await read_limited(resp, MAX_ERROR_BODY)
            except _CONNECTION_ERRORS:
                raw = b""
            finally:
                resp.close()
            raise self.error_from_response(resp.status, raw, parse_retry_after(resp.headers))
        return resp, started

    async def open_sse(
        self,
        path: str,
        body: dict[str, Any],
        *,
        stream_type: type[SSEChunkStream] = SSEChunkStream,
        decode: Callable[[str], Chunk] | None = None,
    ) -> SSEChunkStream:
        """POST for an event stream; ``stream_type`` reads its events (OpenAI
        chunks by default; another upstream's event format in a subclass);
        ``decode`` reads an OpenAI stream of another object (text completions)."""
        resp, started = await self.post(path, body, streaming=True)
        ctype = resp.headers.get("content-type", "")
        if not ctype.lower().startswith("text/event-stream"):
            try:
                raw, _ = await read_limited(resp, MAX_ERROR_BODY)
            except _CONNECTION_ERRORS:
                raw = b""
            finally:
                resp.close()
            raise ProtocolError(
                f"expected a text/event-stream answer, got {ctype or 'no content type'}: "
                f"{raw[:200].decode('utf-8', 'replace')!r}",
                provider=self.name,
                code="not_event_stream",
            )
        if decode is not None:
            return SSEChunkStream(
                resp, provider=self.name, timeouts=self.timeouts, started=started, decode=decode
            )
        return stream_type(resp, provider=self.name, timeouts=self.timeouts, started=started)

    async def post_for_json(self, path: str, body: dict[str, Any]) -> tuple[bytes, Any]:
        """POST for a whole JSON answer: its bytes as received and its top-level
        fields ``error``/``choices``/``data`` (nothing else is decoded).

        An upstream may answer ``200`` with ``{"error": ...}``: that is raised
        here, once, for the library and a gateway alike, as is a body that is
        not a JSON object at all.
        """
        resp, _ = await self.post(path, body, streaming=False)
        try:
            raw, cut = await read_limited(resp, MAX_JSON_BODY)
        except _CONNECTION_ERRORS as exc:
            resp.close()
            raise UpstreamUnavailable(
                f"connection lost while reading the answer ({type(exc).__name__})",
                provider=self.name,
                code=CONNECTION_FAILED,
            ) from exc
        finally:
            resp.release()
        if cut:
            raise ProtocolError(
                f"answer is larger than {MAX_JSON_BODY} bytes", provider=self.name, code="too_large"
            )
        try:
            probe = _probe(raw)
        except msgspec.DecodeError as exc:
            raise _not_a_completion(self.name, str(exc)) from None
        if probe.error is not None:
            raise in_band_error(probe.error, provider=self.name)
        return raw, probe

    async def get_json(self, path: str, query: Mapping[str, str] | None = None) -> Any:
        """GET a JSON answer (a model list), decoded, within the total time
        limit; an error status raised as :meth:`error_from_response` maps it."""
        url = f"{self.base_url}{path}"
        try:
            status, raw, cut, retry_after = await _within(
                self._get(url, query), self.timeouts.total
            )
        except asyncio.TimeoutError:
            raise Timeout(
                f"no answer from {url} within {self.timeouts.total:g} s",
                kind="total",
                provider=self.name,
            ) from None
        except _CONNECTION_ERRORS as exc:
            raise UpstreamUnavailable(
                f"cannot reach {url}: {exc.__class__.__name__}: {exc}",
                provider=self.name,
                code=CONNECTION_FAILED,
            ) from exc
        if status >= 400:
            raise self.error_from_response(status, raw[:MAX_ERROR_BODY], retry_after)
        if cut:
            raise ProtocolError(
                f"answer is larger than {MAX_JSON_BODY} bytes", provider=self.name, code="too_large"
            )
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise ProtocolError(
                f"answer from {url} is not JSON: {exc}", provider=self.name, code="invalid_json"
            ) from None

    async def _get(
        self, url: str, query: Mapping[str, str] | None
    ) -> tuple[int, bytes, bool, float | None]:
        headers = self.request_headers()
        async with self.session().get(url, headers=headers, params=query) as resp:
            raw, cut = await read_limited(resp, MAX_JSON_BODY)
            return resp.status, raw, cut, parse_retry_after(resp.headers)

    async def reply_json(self, path: str, body: dict[str, Any]) -> Reply:
        """POST for a whole ``chat.completion``; keep its bytes, decode the
        completion lazily (:meth:`post_for_json` raises in-band errors)."""
        raw, probe = await self.post_for_json(path, body)
        if not isinstance(probe.choices, list):
            raise _not_a_completion(self.name, "no 'choices'")
        name = self.name

        def decode(data: bytes) -> Completion:
            try:
                return _completion_decoder.decode(data)
            except msgspec.DecodeError as exc:
                raise _not_a_completion(name, str(exc)) from None

        return Reply(raw=raw, decode=decode)


class _Probe(msgspec.Struct):
    """Just enough of an answer to tell it from an error: ``choices`` of a
    completion, ``data`` of an embeddings list."""

    error: Any = None
    choices: Any = None
    data: Any = None


_probe = msgspec.json.Decoder(_Probe).decode


def _not_a_completion(provider: str, why: str, kind: str = "chat.completion") -> ProtocolError:
    return ProtocolError(
        f"answer is not a {kind} JSON object: {why}",
        provider=provider,
        code="invalid_completion",
    )


class _Expiry:
    """The timer callback of :func:`_within`: cancels the task, remembering
    that it did (so a cancellation from elsewhere is not taken for a timeout)."""

    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.fired = False

    def __call__(self) -> None:
        self.fired = True
        self.task.cancel()


if sys.version_info >= (3, 11):

    async def _within(aw: Awaitable[T], limit: float | None) -> T:
        """``aw`` within ``limit`` seconds, or :class:`asyncio.TimeoutError`.

        What ``asyncio.timeout`` does (cancel the task when the timer fires,
        turn that one cancellation into a timeout), without its context
        manager, state machine and two extra coroutines: one timer handle per
        call, paid on every upstream request (wait_for, before 3.12, wraps
        the call in a new task instead).
        """
        if limit is None:
            return await aw
        task = asyncio.current_task()
        assert task is not None
        expiry = _Expiry(task)
        cancelling = task.cancelling()
        handle = asyncio.get_running_loop().call_later(limit, expiry)
        try:
            return await aw
        except asyncio.CancelledError:
            # Ours only if no one else asked to cancel the task meanwhile.
            if expiry.fired and task.uncancel() <= cancelling:
                raise asyncio.TimeoutError from None
            raise
        finally:
            handle.cancel()

else:  # pragma: no cover - Python 3.10

    async def _within(aw: Awaitable[T], limit: float | None) -> T:
        return await asyncio.wait_for(aw, limit)


def _min_opt(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "MAX_ERROR_BODY",
    "MAX_JSON_BODY",
    "HTTPProvider",
    "SSEChunkStream",
    "error_from_body",
    "in_band_error",
    "parse_retry_after",
    "read_limited",
]
