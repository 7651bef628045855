"""The open doors of issue 14, closed: what a client tries, what it gets, as data.

Each row is asserted by one test (tests/test_connections.py, tests/test_doors.py,
tests/test_redis_deadlines.py), which looks its row up by ``key`` and checks
exactly the status and code the row gives; scripts/reliability_table.py renders
the same rows as the "doors" table of docs/reliability.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Door:
    #: The handle a test looks the row up by.
    key: str
    #: What the client (or the operator) does.
    attempt: str
    #: The gateway's options that matter.
    options: str
    #: The answer's status; 2: ``ails serve`` exits with 2; None: no answer, the
    #: connection is closed.
    status: int | None
    code: str | None
    #: The rest of what happens.
    note: str = ""


DOORS: list[Door] = [
    Door("silent", "connects and sends nothing", "`--client-header-timeout`", 408,
         "request_timeout", "then closed"),
    Door("slow-head", "sends its request head one byte every 50 ms", "`--client-header-timeout`",
         408, "request_timeout", "then closed"),
    Door("stalled-body", "sends its head and part of the body, then stalls",
         "`--client-body-timeout`", 408, "request_timeout", "then closed"),
    Door("keepalive", "stays idle after an answer", "`--keepalive-timeout`", None, None,
         "closed"),
    Door("per-client", "opens one connection more than its address may hold",
         "`--max-connections-per-client`", 503, "too_many_connections",
         "`retry-after`, closed; other addresses still get in"),
    Door("total", "opens one connection more than the gateway holds", "`--max-connections`",
         503, "too_many_connections", "`retry-after`, closed"),
    Door("emfile", "runs the gateway out of file descriptors", "a 48-file `ulimit`", None, None,
         "at most one log line per 10 s, no traceback; serving again once they close"),
    Door("unread-body", "40 requests without a key announce 4 MiB and send 1 KiB",
         "`--api-key`", 401, "invalid_api_key",
         "answered before the body is read; the memory stays flat"),
    Door("anonymous-large", "a request without a key announces 4 MiB",
         "`--api-key`, `--allow-signed`", 413, "body_too_large",
         "`--max-anonymous-body-bytes` (256 KiB), before the body is read"),
    Door("anonymous-chunked", "a chunked request without a key sends more than 256 KiB",
         "`--api-key`, `--allow-signed`", 413, "body_too_large", "reading stops at the limit"),
    Door("quota-404", "three anonymous signed requests for an unknown model",
         "`--allow-signed --signed-quota 3/day`", 404, "model_not_found",
         "the quota is not charged"),
    Door("quota-502", "three anonymous signed requests whose upstream fails (streamed or not)",
         "`--allow-signed --signed-quota 3/day`", 502, None,
         "the charge is given back: nothing was served"),
    Door("quota-spent", "a fourth served request after three", "`--signed-quota 3/day`", 429,
         "quota_exceeded", "no replay entry is written for it"),
    Door("public-signed", "the operator starts `--allow-signed` beyond loopback without a quota",
         "`--host 0.0.0.0`", 2, None, "refused unless `--insecure-public`"),
    Door("redis-late", "a rate-limit charge and a replay entry sent to a stalled Redis",
         "`--redis`, `--rpm`", 503, "state_unavailable",
         "when Redis resumes, the queued writes are past their deadline and do nothing"),
    Door("list-missing", "asks for a model while the only upstream was down at start",
         "`--upstream`", 503, "backend_unavailable",
         "`retry-after`; the list is asked for again (every 2 s at most) and the model served "
         "once it is back; 404 `model_not_found` once every list is known"),
    Door("redis-missing", "the operator gives `--redis` without the redis package", "`--redis`",
         2, None, "a message saying to install `ails[redis]`, no traceback"),
]  # fmt: skip


def door(key: str) -> Door:
    for row in DOORS:
        if row.key == key:
            return row
    raise KeyError(key)


def render_doors() -> str:
    lines = [
        "| a client (or operator) | options | status | code | what happens |",
        "| --- | --- | --- | --- | --- |",
    ]
    for d in DOORS:
        if d.status is None:
            status = "—"
        elif d.status == 2:
            status = "exit 2"
        else:
            status = str(d.status)
        code = f"`{d.code}`" if d.code else "—"
        lines.append(f"| {d.attempt} | {d.options} | {status} | {code} | {d.note} |")
    return "\n".join(lines)


__all__ = ["DOORS", "Door", "door", "render_doors"]
