"""What one request did, gathered as it goes, for the metrics and the JSON
access log: which backend answered, the tokens it reported, when the first
byte of the answer went out.

A :class:`RequestRecord` is made by the wrapper around every handler
(server/middleware.py, only when metrics or the JSON access log want it) and
kept in a context variable, :data:`CURRENT`, for the task serving the request
(and in ``request[RECORD]`` for the JSON access line, written after the
answer). The handlers fill in what only they know (tokens, the first streamed
byte); the router reports the backend it tries through
:class:`BackendRecorder` (the router knows no request). Nothing here formats or counts: the metrics
(:mod:`ails.server.metrics`) and the access log (:mod:`ails.server.logformat`)
read the record when the request is over.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from time import perf_counter

import msgspec
from aiohttp import web

from ails.errors import AilsError
from ails.providers.base import Provider
from ails.router import RouterEvents
from ails.server.auth import Caller
from ails.types import Chunk, Usage

#: A request's id (the handlers' wrapper sets it) and who called (admission sets
#: it): typed keys, as aiohttp asks of a request's own storage.
RID = web.RequestKey("ails.rid", str)
CALLER = web.RequestKey("ails.caller", Caller)
#: The record of the request the running task serves (None: not recorded).
CURRENT: ContextVar[RequestRecord | None] = ContextVar("ails_request_record", default=None)

#: Called once a request is over: ``(route template, status, record, now)``.
Finish = Callable[[str, int, "RequestRecord", float], None]


class _Usage(msgspec.Struct):
    usage: Usage | None = None


#: Only ``usage`` of an answer (msgspec skips the rest without building it).
_decode_usage = msgspec.json.Decoder(_Usage).decode


class RequestRecord:
    """One request's facts; times are ``perf_counter`` seconds (0: not yet)."""

    __slots__ = (
        "backend",
        "caller",
        "completion_tokens",
        "error",
        "first",
        "label",
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
        #: Who called, once admitted.
        self.caller: Caller | None = None
        #: The served name of ``model`` (the metrics' label), once admitted.
        self.label: str | None = None
        #: The code of the refusal it got (``rate_limit_exceeded``...), if any.
        self.error: str | None = None
        #: The answer was a stream from a backend.
        self.streamed = False

    def usage(self, usage: Usage | None) -> None:
        if usage is not None:
            self.prompt_tokens = usage.prompt_tokens
            self.completion_tokens = usage.completion_tokens

    def answer(self, raw: bytes) -> None:
        """The tokens of a whole answer's bytes (its ``usage``, if any).

        OpenAI's answers end with ``usage`` (after the choices, which are
        most of the bytes), so the object is read from that key on: ``{`` and
        the tail are the whole object's top-level fields from there when the
        key is the top level's (a ``"`` inside a string is escaped, so
        ``"usage":`` unescaped is a key). A nested one leaves braces over, a
        decode error; then, or without the key, the whole answer is read."""
        usage: Usage | None = None
        at = raw.rfind(b'"usage":')
        try:
            if at > 0:
                try:
                    usage = _decode_usage(b"{" + raw[at:]).usage
                except msgspec.DecodeError:
                    usage = _decode_usage(raw).usage
            else:
                usage = _decode_usage(raw).usage
        except msgspec.DecodeError:  # not ours to judge: the client gets the bytes as they are
            return
        if usage is not None:
            self.prompt_tokens = usage.prompt_tokens
            self.completion_tokens = usage.completion_tokens

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


#: Where a request keeps its record for the JSON access line (``request[RECORD]``).
RECORD = web.RequestKey("ails.record", RequestRecord)


def current_record() -> RequestRecord | None:
    """The record of the request this task is serving (None: not recorded)."""
    return CURRENT.get()


def note_refusal(err: Exception) -> None:
    """Keep a refusal's code on the request's record (the metrics count some)."""
    record = CURRENT.get()
    if record is not None:
        record.error = getattr(err, "code", None)


class BackendRecorder(RouterEvents):
    """Notes on the running request's record which backend the router tries."""

    def attempt(self, provider: Provider, model: str) -> None:
        record = CURRENT.get()
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
    "CALLER",
    "CURRENT",
    "RECORD",
    "RID",
    "BackendRecorder",
    "Finish",
    "RequestRecord",
    "current_record",
    "dialect_of",
    "endpoint_of",
    "note_refusal",
]
