"""What one request did, gathered as it goes, for the metrics and the JSON
access log: which backend answered, the tokens it reported, when the first
byte of the answer went out.

A :class:`RequestRecord` is made by :func:`record_middleware` (installed only
when metrics or the JSON access log want it) and kept in ``request[RECORD]``.
The handlers fill in what only they know (tokens, the first streamed byte);
the router reports the backend it tries through :class:`BackendRecorder`,
which finds the request's record in a context variable (the router knows no
request). Nothing here formats or counts: the metrics
(:mod:`ails.server.metrics`) and the access log (:mod:`ails.server.logformat`)
read the record when the request is over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from time import perf_counter

import msgspec
from aiohttp import web

from ails.errors import AilsError
from ails.providers.base import Provider
from ails.router import RouterEvents
from ails.types import Chunk, Usage

#: Where a request keeps its record (``request[RECORD]``).
RECORD = "ails.record"
#: The record of the request the running task serves.
_current: ContextVar[RequestRecord | None] = ContextVar("ails_request_record", default=None)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Called once a request is over: ``(request, status, record, now)``.
Finish = Callable[[web.Request, int, "RequestRecord", float], None]


class _Usage(msgspec.Struct):
    usage: Usage | None = None


#: Only ``usage`` of an answer (msgspec skips the rest without building it).
_decode_usage = msgspec.json.Decoder(_Usage).decode


class RequestRecord:
    """One request's facts; times are ``perf_counter`` seconds (0: not yet)."""

    __slots__ = (
        "backend",
        "completion_tokens",
        "error",
        "first",
        "model",
        "prompt_tokens",
        "start",
        "streamed",
    )

    def __init__(self, start: float) -> None:
        self.start = start
        #: When the first byte of the answer's body was written (a stream's
        #: first token; for a whole answer, when the handler returned it).
        self.first = 0.0
        #: The backend last tried (the one that answered, when it succeeded).
        self.backend: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        #: The model the request named (as the client wrote it), once admitted.
        self.model: str | None = None
        #: The code of the refusal it got (``rate_limit_exceeded``...), if any.
        self.error: str | None = None
        #: The answer was a stream from a backend.
        self.streamed = False

    def usage(self, usage: Usage | None) -> None:
        if usage is not None:
            self.prompt_tokens = usage.prompt_tokens
            self.completion_tokens = usage.completion_tokens

    def answer(self, raw: bytes) -> None:
        """The tokens of a whole answer's bytes (its ``usage``, if any)."""
        # Not ours to judge here: the client gets the bytes as they are.
        with contextlib.suppress(msgspec.DecodeError):
            self.usage(_decode_usage(raw).usage)

    def batch(self, batch: list[Chunk]) -> None:
        """A streamed batch: usage rides on the last chunk of a stream (and a
        backend that repeats it gives the running total, so the last one wins)."""
        self.streamed = True
        if batch:
            usage = batch[-1].usage
            if usage is not None:
                self.prompt_tokens = usage.prompt_tokens
                self.completion_tokens = usage.completion_tokens

    def first_byte(self) -> None:
        if not self.first:
            self.first = perf_counter()


def current_record() -> RequestRecord | None:
    """The record of the request this task is serving (None: not recorded)."""
    return _current.get()


def note_refusal(err: Exception) -> None:
    """Keep a refusal's code on the request's record (the metrics count some)."""
    record = _current.get()
    if record is not None:
        record.error = getattr(err, "code", None)


def record_of(request: web.BaseRequest) -> RequestRecord | None:
    record: RequestRecord | None = request.get(RECORD)
    return record


def record_middleware(finish: Finish | None) -> Callable[..., Awaitable[web.StreamResponse]]:
    """A middleware that gives each request a record, and hands it to
    ``finish`` (the metrics) when the handler is done. It must be outside the
    one that turns errors into responses, so that it sees every final status."""

    @web.middleware
    async def record_request(request: web.Request, handler: _Handler) -> web.StreamResponse:
        record = RequestRecord(perf_counter())
        request[RECORD] = record
        token = _current.set(record)
        try:
            resp = await handler(request)
        except asyncio.CancelledError:
            if finish is not None:  # the client went away: nginx's 499
                finish(request, 499, record, perf_counter())
            raise
        except web.HTTPException as exc:  # a redirect; errors are answers by now
            if finish is not None:
                finish(request, exc.status, record, perf_counter())
            raise
        finally:
            _current.reset(token)
        now = perf_counter()
        if not record.first:
            record.first = now  # a whole answer: its body goes out now
        if finish is not None:
            finish(request, resp.status, record, now)
        return resp

    return record_request


class BackendRecorder(RouterEvents):
    """Notes on the running request's record which backend the router tries."""

    def attempt(self, provider: Provider, model: str) -> None:
        record = _current.get()
        if record is not None:
            record.backend = provider.name

    def failed(self, provider: Provider, model: str, exc: AilsError, retrying: bool) -> None:
        pass

    def fallback(self, provider: Provider, model: str, exc: AilsError) -> None:
        pass


def endpoint_of(request: web.Request) -> str:
    """The route template (``/v1/models/{model}``), or ``other`` for a path no
    route serves: a bounded label, never the path a client made up."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "other"


_DIALECTS: dict[str, str] = {}


def dialect_of(endpoint: str) -> str:
    """The API dialect of a route template: ``anthropic`` (Messages),
    ``responses``, ``openai`` (the rest of ``/v1``), or ``none``."""
    dialect = _DIALECTS.get(endpoint)
    if dialect is None:
        if endpoint.startswith("/v1/messages"):
            dialect = "anthropic"
        elif endpoint.startswith("/v1/responses"):
            dialect = "responses"
        elif endpoint.startswith("/v1/"):
            dialect = "openai"
        else:
            dialect = "none"
        _DIALECTS[endpoint] = dialect
    return dialect


__all__ = [
    "RECORD",
    "BackendRecorder",
    "Finish",
    "RequestRecord",
    "current_record",
    "dialect_of",
    "endpoint_of",
    "note_refusal",
    "record_middleware",
    "record_of",
]
