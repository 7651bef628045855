"""What the HTTP providers share: one aiohttp session, sending, error mapping.
The stream of chunks with its deadlines is in ``_stream``.

aiohttp, not httpx: measured on this machine, httpx 0.28's pool spends ~9 ms
of CPU per request at 64 concurrent connections, while aiohttp holds up and
streams 1.7x faster (docs/architecture.md). Reads are bulk (all that is
buffered, in one step: ``_drain``), lines are split in bulk by :mod:`ails.sse`,
and chunks are decoded by msgspec straight into :class:`ails.types.Chunk`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

import aiohttp
import msgspec

from ails.errors import (
    CONNECTION_FAILED,
    AilsError,
    ProtocolError,
    ProviderError,
    Timeout,
    UpstreamUnavailable,
)
from ails.providers._deadline import Deadline, within
from ails.providers._drain import drain
from ails.providers._errors import error_from_body, parse_retry_after
from ails.providers._probe import _not_a_completion, _probe, _usage_decoder
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
#: How long an ails gateway's answer waited for a busy model (ms), as it says it.
QUEUE_MS = "x-ails-queue-ms"

#: What sending a request may raise that :meth:`HTTPProvider._send_failed` maps.
_SEND_ERRORS = (asyncio.CancelledError, aiohttp.InvalidURL, *_CONNECTION_ERRORS)

_completion_decoder = msgspec.json.Decoder(Completion, strict=False)
_encode = msgspec.json.Encoder().encode


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """Read at most ``limit`` bytes of a body; say whether it was cut."""
    content = resp.content
    parts: list[bytes] = []
    size = 0
    while True:
        data = drain(content) or await content.readany()
        if not data:
            return b"".join(parts), False
        parts.append(data)
        size += len(data)
        if size > limit:
            return b"".join(parts)[:limit], True
        if content.at_eof():  # not one more read to learn that
            return b"".join(parts), False


async def _start_of(resp: aiohttp.ClientResponse) -> bytes:
    """The first bytes of an answer that is not the one asked for (enough to
    quote in an error; none if the connection failed), the answer closed."""
    try:
        raw, _ = await read_limited(resp, MAX_ERROR_BODY)
    except _CONNECTION_ERRORS:
        raw = b""
    finally:
        resp.close()
    return raw


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

    def _send_failed(
        self, exc: BaseException, url: str, limit: float | None, deadline: Deadline | None
    ) -> AilsError | None:
        """A failure to send as an ails error, with the cause to raise it
        ``from``, or ``None``: not ours to map (a cancellation from elsewhere)."""
        error: AilsError
        cause: BaseException | None = exc
        if isinstance(exc, asyncio.CancelledError):
            if deadline is None or not deadline.expired():
                return None
            error = Timeout(
                f"no response from {url} within {limit:g} s",
                kind="idle" if limit == self.timeouts.idle else "total",
                provider=self.name,
            )
            cause = None
        elif isinstance(exc, aiohttp.ServerTimeoutError):  # aiohttp's own: the connect limit
            error = Timeout(
                f"could not connect to {url} within {self.timeouts.connect} s",
                kind="connect",
                provider=self.name,
            )
        elif isinstance(exc, aiohttp.InvalidURL):
            error = AilsError(f"invalid base_url for {self.name}: {url}")
        else:
            error = UpstreamUnavailable(
                f"cannot reach {url}: {exc.__class__.__name__}: {exc}",
                provider=self.name,
                code=CONNECTION_FAILED,
            )
        error.__cause__ = cause  # raised ``from`` it
        return error

    async def _send(
        self, path: str, body: dict[str, Any], limit: float | None
    ) -> aiohttp.ClientResponse:
        """POST ``body`` as JSON and wait for the answer's head, within
        ``limit`` seconds; a failure to send or an error status raised as an
        ails error."""
        url = f"{self.base_url}{path}"
        headers = self.request_headers()
        headers.setdefault("content-type", "application/json")
        deadline = Deadline(limit) if limit is not None else None
        try:
            resp = await self.session().post(url, data=_encode(body), headers=headers)
        except _SEND_ERRORS as exc:
            error = self._send_failed(exc, url, limit, deadline)
            if error is None:
                raise
            raise error from error.__cause__
        finally:
            if deadline is not None:
                deadline.cancel()
        if resp.status >= 400:
            raise await self._refusal(resp)
        return resp

    async def _refusal(self, resp: aiohttp.ClientResponse) -> ProviderError:
        """An error status's answer as the error to raise (its body read, cut)."""
        raw = await _start_of(resp)
        return self.error_from_response(resp.status, raw, parse_retry_after(resp.headers))

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
        # A streamed answer's headers come before any content, so the idle
        # limit applies to them; a whole answer's come after all of it, so
        # only the total limit does.
        timeouts = self.timeouts
        idle, limit = timeouts.idle, timeouts.total
        if idle is not None and (limit is None or idle < limit):
            limit = idle
        started = asyncio.get_running_loop().time()
        resp = await self._send(path, body, limit)
        ctype = resp.headers.get("content-type", "")
        if not ctype.lower().startswith("text/event-stream"):
            raw = await _start_of(resp)
            raise ProtocolError(
                f"expected a text/event-stream answer, got {ctype or 'no content type'}: "
                f"{raw[:200].decode('utf-8', 'replace')!r}",
                provider=self.name,
                code="not_event_stream",
            )
        if decode is not None:
            return SSEChunkStream(
                resp, provider=self.name, timeouts=timeouts, started=started, decode=decode
            )
        return stream_type(resp, provider=self.name, timeouts=timeouts, started=started)

    @overload
    async def post_for_json(self, path: str, body: dict[str, Any]) -> tuple[bytes, Any]: ...

    @overload
    async def post_for_json(
        self, path: str, body: dict[str, Any], then: Callable[[bytes, Any, str | None], T]
    ) -> T: ...

    async def post_for_json(
        self,
        path: str,
        body: dict[str, Any],
        then: Callable[[bytes, Any, str | None], T] | None = None,
    ) -> tuple[bytes, Any] | T:
        """POST for a whole JSON answer: its bytes as received and its top-level
        fields ``error``/``choices``/``data`` (nothing else is decoded), or
        what ``then`` makes of those two and of the answer's
        ``x-ails-queue-ms`` header (in this coroutine, not another one around
        it: :meth:`completion_reply`).

        An upstream may answer ``200`` with ``{"error": ...}``: that is raised
        here, once, for the library and a gateway alike, as is a body that is
        not a JSON object at all.
        """
        resp = await self._send(path, body, self.timeouts.total)
        content = resp.content
        # An ails gateway upstream says how long the answer waited for a busy
        # model; a gateway in front passes it on (None from any other server).
        queued = resp.headers.get(QUEUE_MS) if then is not None else None
        try:
            if content.is_eof():  # all of it is here (a short answer): one step
                raw = drain(content)
                cut = len(raw) > MAX_JSON_BODY
                if cut:
                    raw = raw[:MAX_JSON_BODY]
            else:
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
        return (raw, probe) if then is None else then(raw, probe, queued)

    async def get_json(self, path: str, query: Mapping[str, str] | None = None) -> Any:
        """GET a JSON answer (a model list), decoded, within the total time
        limit; an error status raised as :meth:`error_from_response` maps it."""
        url = f"{self.base_url}{path}"
        try:
            status, raw, cut, retry_after = await within(self._get(url, query), self.timeouts.total)
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
        return await self.post_for_json(path, body, self.completion_reply)

    def completion_reply(self, raw: bytes, probe: Any, queued: str | None = None) -> Reply:
        """The :class:`Reply` of a whole ``chat.completion`` that
        :meth:`post_for_json` read (a provider passes this to it as ``then``:
        one coroutine less per request than :meth:`reply_json`), with the
        upstream's ``x-ails-queue-ms`` when it sent a whole number."""
        # has_choices and read_usage, inline: this runs on every request.
        choices = probe.choices
        if not (choices and memoryview(choices)[0] == 0x5B):  # "["
            raise _not_a_completion(self.name, "no 'choices'")
        usage = None
        if probe.usage:
            try:  # not contextlib.suppress: a context manager per request
                usage = _usage_decoder.decode(probe.usage)
            except msgspec.DecodeError:
                usage = None  # not a usage object: the answer is passed on all the same
        queue_ms = int(queued) if queued is not None and queued.isdigit() else None
        return Reply(raw=raw, decode=self._decode_completion, usage=usage, queue_ms=queue_ms)

    def _decode_completion(self, data: bytes) -> Completion:
        try:
            return _completion_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise _not_a_completion(self.name, str(exc)) from None


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
