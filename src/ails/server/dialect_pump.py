"""The streaming path of the other dialects (Anthropic Messages, OpenAI
Responses): a backend's chunks out as the dialect's named SSE events.

The counterpart of server/stream_pump.py for the chat dialect, with the same
rules: as few sends as it can (the head and the opening events go out with
the first content, the last batch with the end), the key's token use charged
whatever happens, the request given back when the backend failed before any
content, and a failure after the head ends the stream with the dialect's own
error event, never a silent truncation. The dialect itself (server/dialects/)
says what the events are: ``start``, ``feed(chunk)``, ``finish()``,
``fail(exc)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ails.errors import AilsError
from ails.providers.base import Batch, ChunkStream, QueueWait
from ails.server.admission import Admitted
from ails.server.dialects.common import DialectEvent
from ails.server.ratelimit import UsageMeter
from ails.server.records import current_record
from ails.server.sse_response import SSE_HEADERS, DeferredHeadResponse
from ails.types import Chunk
from ails.wire import named_events, queue_comment

if TYPE_CHECKING:
    from ails.server.app import Gateway

log = logging.getLogger("ails.server")


async def pump_events(
    gateway: Gateway,
    request: web.Request,
    stream: ChunkStream,
    admitted: Admitted,
    prompt: list[dict[str, Any]],
    start: list[DialectEvent],
    feed: Callable[[Chunk], list[DialectEvent]],
    finish: Callable[[], list[DialectEvent]],
    fail: Callable[[AilsError], list[DialectEvent]],
) -> web.StreamResponse:
    """Send ``start``, then each batch's events, then ``finish()``; on a
    failure ``fail(exc)``'s events. The backend is closed whatever happens.

    As few sends as the chat path (server/stream_pump.py): the head and
    ``start`` go out with the first events (a queue notice, or the first
    batch's), and the last batch with the end, so an upstream answer that
    arrives in one read leaves in two sends, not five.

    The tokens the stream used (its usage chunk, else an estimate from
    ``prompt`` and the chunks) are charged to the key's ``--tpm`` whatever
    happens; a stream that failed before any content gives its request back."""
    headers, limits = admitted.headers, admitted.limits
    meter = UsageMeter(prompt) if limits is not None and limits.counts_tokens else None
    rid = headers["x-request-id"]
    resp = DeferredHeadResponse(headers={**SSE_HEADERS, **headers})
    record, metrics = current_record(), gateway.metrics
    if metrics is not None:
        metrics.streams += 1
    try:
        await resp.prepare(request)
        pending = named_events(start)  # sent with the first bytes after it
        wrote = False  # any content: a failure after it used the backend
        try:
            async for batch in stream:
                if type(batch) is QueueWait:  # comments are legal in any SSE stream
                    if not batch.started:
                        await resp.write(pending + queue_comment(batch.ahead))
                        pending = b""
                    continue
                if record is not None:
                    record.batch(batch)
                if meter is not None:
                    meter.observe(batch.meta if isinstance(batch, Batch) else batch)
                events = [event for chunk in batch for event in feed(chunk)]
                if not events:
                    continue
                wrote = True
                if record is not None:
                    record.first_byte()
                if stream.ended:  # the last batch: sent with the end, in one write
                    pending += named_events(events)
                    break
                await resp.write(pending + named_events(events))
                pending = b""
            end = finish()
        except AilsError as exc:
            log.warning("request %s: stream failed: %s", rid, gateway.redact(str(exc)))
            end = fail(exc)
            if not wrote and admitted.refund is not None:
                await admitted.refund()
        except ConnectionError:
            raise
        except Exception:  # a bug must not look like a clean end either
            log.exception("request %s: stream failed", rid)
            end = fail(AilsError("the gateway failed while streaming", code="internal_error"))
        await resp.write_eof(pending + named_events(end))
    except ConnectionError:
        log.info("request %s: the client went away mid-stream", rid)
    finally:
        await stream.aclose()
        if metrics is not None:
            metrics.streams -= 1
        if meter is not None and limits is not None:  # whatever the stream used
            limits.charge(meter.tokens())
    return resp


__all__ = ["pump_events"]
