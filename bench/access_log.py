"""CPU per access line: ``--log-format text`` against ``json``, through the
logging stack ``ails serve`` sets up (its handler, server/logsink.py, which
redacts; its formatter; writing to /dev/null, one write a line here: no event
loop runs, so nothing is buffered); and the metrics' work for one request
(the router's attempt event and the counting when it ends).

    .venv/bin/python bench/access_log.py [--n 50000] [--rounds 5]

Process CPU time (``time.process_time``) per call, median over rounds: on a
shared machine a wall clock would measure the neighbours.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from ails.server.auth import Caller
from ails.server.errors import Redactor
from ails.server.logformat import JsonAccessLogger, JsonFormatter
from ails.server.logsink import LogSink, TextFormatter
from ails.server.middleware import AccessLogger
from ails.server.records import RECORD, RequestRecord

SECRETS = ["sk-client-0123456789abcdef", "sk-upstream-fedcba9876543210", "s3cret-pass-4711"]


def logger_for(fmt: str, sink: object) -> logging.Logger:
    redact = Redactor(SECRETS, names={"127.0.0.1:9999": "<upstream1>"})
    handler = LogSink(sink, redact)  # type: ignore[arg-type]
    if fmt == "json":
        handler.setFormatter(JsonFormatter(redact))
    else:
        handler.setFormatter(TextFormatter())
    log = logging.getLogger(f"bench.access.{fmt}")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log


def request() -> web.Request:
    req = make_mocked_request("POST", "/v1/chat/completions", headers={"Authorization": "Bearer x"})
    req["rid"] = "a6a582aeadd2ed60379d000000000001"
    req["caller"] = Caller(key_digest=bytes(32), name="alice")
    record = RequestRecord(time.perf_counter())
    record.model, record.backend = "test-model", "upstream1"
    record.prompt_tokens, record.completion_tokens = 12, 10
    record.first = record.start + 0.0012
    req[RECORD] = record
    return req


def metrics_call(req: web.Request) -> Callable[[], None]:
    from ails.server.build import create_gateway
    from ails.server.config import build_config

    gateway = create_gateway(build_config(cli={"upstream": ["http://127.0.0.1:9/v1"]}), environ={})
    metrics = gateway.metrics
    assert metrics is not None
    provider = gateway.router.backends[0].provider
    record = req[RECORD]

    def one() -> None:
        metrics.events.attempt(provider, "test-model")
        metrics.finish(req, 200, record, record.start + 0.002)

    return one


def per_call_us(fn: Callable[[], None], n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with open(os.devnull, "w") as sink:
        req = request()
        resp = web.Response(body=b"{}")
        loggers = {
            "text": AccessLogger(logger_for("text", sink), ""),
            "json": JsonAccessLogger(logger_for("json", sink), ""),
        }
        calls = {
            f"access line, {name}": (lambda a=access: a.log(req, resp, 0.002))
            for name, access in loggers.items()
        }
        calls["metrics, one request"] = metrics_call(req)
        results: dict[str, list[float]] = {k: [] for k in calls}
        for _ in range(args.rounds):
            for name, call in calls.items():
                results[name].append(per_call_us(call, args.n))
    for name, values in results.items():
        print(f"{name}: {statistics.median(values):.2f} µs CPU")


if __name__ == "__main__":
    main()
