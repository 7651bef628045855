"""The streaming path of the OpenAI dialects: an open stream out as SSE.

Streams are passed through without buffering: one ``write`` per batch the
backend produced (one network read, one model token), framed by
:mod:`ails.wire` (which also keeps the seed's naive client working): each
chunk the backend received is forwarded as its own JSON text (the provider
contract keeps it), so fields ails does not model survive.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ails.errors import AilsError
from ails.providers.base import Batch, ChunkStream, QueueWait
from ails.server.auth import Refund
from ails.server.errors import Redactor, stream_error_event
from ails.server.ratelimit import Admission, UsageMeter
from ails.server.records import RequestRecord, current_record
from ails.server.sse_response import SSE_HEADERS, DeferredHeadResponse
from ails.wire import DONE, ChunkEncoder, chunk_json, frame_batch, queue_comment

if TYPE_CHECKING:
    from ails.server.app import Gateway

log = logging.getLogger("ails.server")


async def stream_out(
    gateway: Gateway,
    request: web.Request,
    stream: ChunkStream,
    headers: dict[str, str],
    include_usage: bool,
    admission: Admission | None,
    refund: Refund | None,
    *,
    prompt: list[dict[str, Any]],
    model: str | None,
    encode: ChunkEncoder = chunk_json,
) -> web.StreamResponse:
    """Send an open stream as OpenAI SSE (``encode`` writes the chunks ails
    made: chat chunks, or a text completion's) and close it, whatever happens."""
    rid = headers["x-request-id"]
    meter = None
    if admission is not None and admission.counts_tokens:
        meter = UsageMeter(prompt)
    metrics = gateway.metrics
    if metrics is not None:
        metrics.streams += 1
    try:
        # The head goes out with the first batch, in one send, not alone
        # before it (aiohttp sends a stream's head at once by default).
        resp = DeferredHeadResponse(headers={**SSE_HEADERS, **headers})
        try:
            await resp.prepare(request)
            nothing = await pump(
                resp,
                stream,
                include_usage,
                rid,
                gateway.redact,
                meter,
                model,
                encode,
                current_record(),
            )
            if nothing and refund is not None:  # failed before any output
                await refund()
        except ConnectionError:
            log.info("request %s: the client went away mid-stream", rid)
        return resp
    finally:
        # Also on cancellation (the client went away): the upstream request
        # is closed, or the local generation stopped, at once. A stream that
        # closed itself at its end is not closed again (a coroutine less).
        if not stream.closed:
            await stream.aclose()
        if metrics is not None:
            metrics.streams -= 1
        if meter is not None and admission is not None:  # whatever the stream used
            admission.charge(meter.tokens())


async def pump(
    resp: web.StreamResponse,
    stream: ChunkStream,
    include_usage: bool,
    rid: str,
    redact: Redactor,
    meter: UsageMeter | None = None,
    model: str | None = None,
    encode: ChunkEncoder = chunk_json,
    record: RequestRecord | None = None,
) -> bool:
    """Copy the stream out, one write per batch; end it with ``[DONE]``, after
    an error event if it failed (never a silent truncation). True: it failed
    before writing anything."""
    write = resp.write
    wrote = False
    last = b""
    try:
        if record is not None:
            record.streamed = True
        async for batch in stream:
            if type(batch) is QueueWait:  # a busy model: say where it stands
                if not batch.started:
                    await write(queue_comment(batch.ahead))
                continue
            # Only what the gateway must look at: the chunks of a batch read
            # as plain frames are forwarded as received, never decoded.
            meta = batch.meta if isinstance(batch, Batch) else batch  # chunk_meta(), inline
            if meter is not None:
                meter.observe(meta)
            # Usage rides on a stream's last chunk (checked inline: per batch).
            if record is not None and meta and meta[-1].usage is not None:
                record.usage(meta[-1].usage)
            # Chunks ails made say the name asked for; received ones are as sent.
            data = frame_batch(batch, include_usage=include_usage, model=model, encode=encode)
            if stream.ended:  # the last batch: sent with the end, in one write
                last = data
                if record is not None and not wrote:
                    record.first_byte()
                break
            if data:
                if not wrote:
                    wrote = True
                    if record is not None:
                        record.first_byte()
                await write(data)
    except AilsError as exc:
        log.warning("request %s: stream failed: %s", rid, redact(str(exc)))
        end = stream_error_event(exc, redact) + DONE
    except ConnectionError:
        raise
    except Exception as exc:  # a bug must not look like a clean end either
        log.exception("request %s: stream failed", rid)
        end = stream_error_event(exc, redact) + DONE
    else:
        end = DONE
    # The last batch, the end marker and the end of the body in one send.
    await resp.write_eof(last + end)
    return end is not DONE and not wrote
