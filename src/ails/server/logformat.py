"""``--log-format json``: every log line the gateway writes is one JSON object.

Each line has ``time`` (UTC, ISO 8601 with milliseconds), ``level``,
``logger`` and ``message``, and ``exception`` when there is one. An access
line adds the request's fields (:class:`JsonAccessLogger`; docs/metrics.md
names them). Every text field goes through the gateway's redactor here, on
top of the redacting filter that already cleaned the message, so a key a
client put in a model name or a path never reaches the log.

Through ``ails serve``'s own handler (server/logsink.py) the access line
costs one dict and one msgspec encode, and no ``LogRecord``: the handler
buffers it. Through any other handler its fields ride on a ``LogRecord``
(``ACCESS_FIELDS``) and :class:`JsonFormatter` writes them out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from time import perf_counter
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ails.server.logsink import access_sink
from ails.server.records import CALLER, RECORD, RID, RequestRecord, dialect_of, endpoint_of

_encode = msgspec.json.Encoder().encode
#: A model name longer than this is cut in the log (it is the client's text).
MAX_MODEL_CHARS = 256
#: The ``LogRecord`` attribute an access line's fields ride on.
ACCESS_FIELDS = "ails_access"
#: The access fields a client writes (its request id, method, path, model
#: name): the ones that can hold a secret, so the ones redacted. The rest
#: are the gateway's own (numbers, a key's id, a backend's name).
CLIENT_FIELDS = ("request_id", "method", "path", "model")


def _no_redaction(text: str) -> str:
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record. ``redact`` is the gateway's redactor; the
    command replaces it once the backends (and so their keys) are known."""

    def __init__(self, redact: Callable[[str], str] = _no_redaction) -> None:
        super().__init__()
        self.redact = redact
        self._second = -1
        self._stamp = ""

    def _time(self, created: float) -> str:
        # The date text is made once a second, not once a line (as the text format does).
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

    def access_line(
        self, name: str, message: str, fields: dict[str, Any] | None, created: float
    ) -> str:
        """The line of an INFO record carrying ``fields``, made without the
        record (server/logsink.py); ``message`` comes redacted."""
        line: dict[str, Any] = {
            "time": self._time(created),
            "level": "INFO",
            "logger": name,
            "message": message,
        }
        if fields is not None:
            self._add_fields(line, fields)
        return _encode(line).decode() + "\n"

    def _add_fields(self, line: dict[str, Any], fields: dict[str, Any]) -> None:
        line.update(fields)
        redact = self.redact
        for name in CLIENT_FIELDS:
            value = fields[name]
            if value is not None:
                line[name] = redact(value)

    def format(self, record: logging.LogRecord) -> str:
        redact = self.redact
        line: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        fields: dict[str, Any] | None = getattr(record, ACCESS_FIELDS, None)
        if fields is not None:
            self._add_fields(line, fields)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redact(record.exc_text)
        return _encode(line).decode()


def access_fields(
    request: web.BaseRequest, response: web.StreamResponse, seconds: float
) -> dict[str, Any]:
    """The fields of one request's access line (docs/metrics.md)."""
    record: RequestRecord | None = request.get(RECORD)
    caller = request.get(CALLER)
    endpoint = endpoint_of(request)  # type: ignore[arg-type]  # a web.Request here
    fields: dict[str, Any] = {
        "request_id": request.get(RID),
        "client": request.remote,
        "method": request.method,
        "path": request.path,
        "status": response.status,
        "key_id": None if caller is None else caller.key_id or caller.label(),
        "dialect": dialect_of(endpoint),
        "model": None,
        "backend": None,
        "prompt_tokens": None,
        "completion_tokens": None,
        "first_byte_ms": None,
        "total_ms": round(seconds * 1000, 1),
        "bytes": response.body_length,
    }
    if record is not None:
        # The record's clock, not aiohttp's ``seconds`` (the loop's time, which
        # uvloop updates once per turn: coarser than the first byte's).
        fields["total_ms"] = round((perf_counter() - record.start) * 1000, 1)
        model = record.model
        fields["model"] = model[:MAX_MODEL_CHARS] if model is not None else None
        fields["backend"] = record.backend
        if record.prompt_tokens or record.completion_tokens:  # reported by the backend
            fields["prompt_tokens"] = record.prompt_tokens
            fields["completion_tokens"] = record.completion_tokens
        if record.first:
            fields["first_byte_ms"] = round((record.first - record.start) * 1000, 1)
    return fields


class JsonAccessLogger(AbstractAccessLogger):
    """The access line of ``--log-format json``: a short message and the
    request's fields, which :class:`JsonFormatter` writes out."""

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self.sink = access_sink(logger)  # once a connection (middleware.AccessLogger)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        sink = self.sink
        if sink is not None:  # ``ails serve``'s own handler: no record, buffered
            message = f"{request.method} {request.path} {response.status}"
            sink.access(logger.name, message, access_fields(request, response, time))
            return
        # makeRecord + handle is what ``logger.info`` does, less the search of
        # the stack for the caller's file and line, which no access line shows.
        record = logger.makeRecord(
            logger.name,
            logging.INFO,
            __file__,
            0,
            "%s %s %d",
            (request.method, request.path, response.status),
            None,
        )
        setattr(record, ACCESS_FIELDS, access_fields(request, response, time))
        logger.handle(record)


__all__ = ["ACCESS_FIELDS", "JsonAccessLogger", "JsonFormatter", "access_fields"]
