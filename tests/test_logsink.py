"""The gateway's log handler (server/logsink.py): an access line written
without a ``LogRecord`` is the line ``logging`` would write, redacted the
same; buffered lines keep their order, go out on a timer and at shutdown;
any other logging configuration gets the line through ``logging``."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from ails.server.auth import Caller
from ails.server.errors import Redactor
from ails.server.logformat import JsonAccessLogger, JsonFormatter
from ails.server.logsink import FLUSH_LINES, LogSink, TextFormatter, access_sink
from ails.server.middleware import AccessLogger
from ails.server.records import CALLER, RID

SECRET = "sk-secret-0123456789"


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("test.logsink.access")
    log.setLevel(logging.INFO)
    yield log
    log.handlers[:] = []
    log.propagate = True
    log.setLevel(logging.NOTSET)


def sink_on(log: logging.Logger, fmt: str) -> tuple[LogSink, io.StringIO]:
    out = io.StringIO()
    sink = LogSink(out, Redactor([SECRET], names={"10.0.0.9:8000": "<upstream1>"}))
    sink.setFormatter(JsonFormatter(sink.redact) if fmt == "json" else TextFormatter())
    log.handlers[:] = [sink]
    log.propagate = False
    return sink, out


def request(path: str) -> web.Request:
    req = make_mocked_request("POST", path)
    req[RID] = "rid-1"
    req[CALLER] = Caller(key_digest=bytes(32), name="alice")
    return req


def without_time(line: str) -> str:
    return line.split(" ", 2)[2]  # "DATE TIME,ms REST": the clock differs by a few ms


def test_the_text_line_is_the_one_logging_writes_and_is_redacted(logger: logging.Logger) -> None:
    sink, out = sink_on(logger, "text")
    req, resp = request(f"/v1/{SECRET}/x"), web.Response(status=404)
    assert access_sink(logger) is sink
    AccessLogger(logger, "").log(req, resp, 0.0123)  # no loop running: written at once
    fast = out.getvalue()
    # The same line through logging (a handler access_sink does not take).
    plain = logging.StreamHandler(io.StringIO())
    plain.setFormatter(TextFormatter())
    logger.handlers[:] = [sink, plain]
    assert access_sink(logger) is None
    AccessLogger(logger, "").log(req, resp, 0.0123)
    assert fast.count("\n") == 1 and SECRET not in fast
    assert without_time(out.getvalue().splitlines()[1]) == without_time(fast.rstrip("\n"))
    assert without_time(fast) == (
        f"INFO test.logsink.access: {req.remote} POST /v1/***/x 404 12.3ms"
        " rid=rid-1 who=key:alice\n"
    )


def test_the_json_line_is_the_one_logging_writes(logger: logging.Logger) -> None:
    sink, out = sink_on(logger, "json")
    req, resp = request(f"/v1/{SECRET}"), web.Response(status=404)
    JsonAccessLogger(logger, "").log(req, resp, 0.002)
    logger.handlers[:] = [sink, logging.NullHandler()]  # through logging now
    JsonAccessLogger(logger, "").log(req, resp, 0.002)
    fast, slow = (json.loads(line) for line in out.getvalue().splitlines())
    assert fast.pop("time").endswith("Z") and slow.pop("time").endswith("Z")
    assert fast == slow
    assert fast["path"] == "/v1/***" and fast["message"] == "POST /v1/*** 404"
    assert fast["key_id"] == "alice" and fast["logger"] == "test.logsink.access"


def test_lines_wait_for_the_timer_keep_their_order_and_flush_at_shutdown(
    logger: logging.Logger,
) -> None:
    sink, out = sink_on(logger, "text")
    other = logging.getLogger("test.logsink.access.other")

    async def run() -> list[str]:
        seen = []
        AccessLogger(logger, "").log(request("/a"), web.Response(), 0.001)
        seen.append(out.getvalue())  # buffered
        await asyncio.sleep(0.3)
        seen.append(out.getvalue())  # the timer wrote it
        AccessLogger(logger, "").log(request("/b"), web.Response(), 0.001)
        other.warning("after b")  # an ordinary record: what was buffered goes first
        seen.append(out.getvalue())
        AccessLogger(logger, "").log(request("/c"), web.Response(), 0.001)
        return seen

    seen = asyncio.run(run())
    assert seen[0] == "" and " /a " in seen[1]
    lines = seen[2].splitlines()
    assert " /b " in lines[1] and "WARNING test.logsink.access.other: after b" in lines[2]
    assert " /c " not in out.getvalue()
    sink.flush()  # what ails serve does once its server has stopped
    assert " /c " in out.getvalue().splitlines()[-1]


def test_a_full_buffer_is_written_without_waiting(logger: logging.Logger) -> None:
    _, out = sink_on(logger, "text")

    async def run() -> int:
        for i in range(FLUSH_LINES):
            AccessLogger(logger, "").log(request(f"/{i}"), web.Response(), 0.001)
        return out.getvalue().count("\n")

    assert asyncio.run(run()) == FLUSH_LINES


def test_the_level_and_other_configurations_are_honoured(logger: logging.Logger) -> None:
    sink, out = sink_on(logger, "text")
    logger.setLevel(logging.WARNING)
    AccessLogger(logger, "").log(request("/quiet"), web.Response(), 0.001)
    JsonAccessLogger(logger, "").log(request("/quiet"), web.Response(), 0.001)
    sink.setLevel(logging.WARNING)
    logger.setLevel(logging.INFO)
    assert access_sink(logger) is None  # the handler's level drops INFO: logging decides
    AccessLogger(logger, "").log(request("/quiet"), web.Response(), 0.001)
    assert out.getvalue() == ""
    sink.setLevel(logging.NOTSET)
    sink.setFormatter(logging.Formatter("%(message)s"))  # a formatter of the user's
    assert access_sink(logger) is None
    AccessLogger(logger, "").log(request("/mine"), web.Response(), 0.001)
    assert " POST /mine 200 " in out.getvalue() and "INFO" not in out.getvalue()
