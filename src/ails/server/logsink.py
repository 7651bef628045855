"""Where the gateway's log lines go: :class:`LogSink`, the one handler
``ails serve`` installs (stderr by default), and the text line's format.

An access line is written without a ``LogRecord``: :func:`access_sink` finds
the sink a line of a logger would reach (the logger's level, its handlers and
their levels honoured, as ``logging`` would) and the line is formatted
straight into the sink's buffer (:meth:`LogSink.access`), redacted as every
other line. Buffered lines go out together, at most :data:`FLUSH_SECONDS`
after the first of them, at :data:`FLUSH_LINES` lines, before any other
record (so the order of the lines is kept) and when the sink is flushed or
closed (``ails serve``'s shutdown, and ``logging.shutdown`` at exit). A
process killed abruptly (SIGKILL, a crash of the interpreter) loses the
access lines of at most the last :data:`FLUSH_SECONDS` (and never more than
:data:`FLUSH_LINES` lines); every other record is written at once.

Where the configuration is not the one ``ails serve`` makes (a handler of
another kind, another handler beside it, a formatter without
``access_line``), the access loggers log through ``logging`` as before. The
access loggers look the sink up when aiohttp makes them, once a connection:
a handler added or removed later applies to the connections opened after it
(the logger's level applies at once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import IO, Any, Protocol

#: The longest an access line waits in the buffer (seconds).
FLUSH_SECONDS = 0.1
#: The most access lines the buffer holds before it is written out.
FLUSH_LINES = 64


def _no_redaction(text: str) -> str:
    return text


class AccessFormat(Protocol):
    """A formatter that can write an access line without a ``LogRecord``."""

    def access_line(
        self, name: str, message: str, fields: dict[str, Any] | None, created: float
    ) -> str: ...


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE``, with the date and time text made once a
    second rather than once a line (``strftime`` per access-log line was a
    visible share of a request's CPU under load)."""

    _second = -1
    _text = ""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def _stamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._text = time.strftime(self.default_time_format, self.converter(created))
        return self._text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return f"{self._stamp(record.created)},{int(record.msecs):03d}"

    def access_line(
        self, name: str, message: str, fields: dict[str, Any] | None, created: float
    ) -> str:
        """The line ``format`` would make of an INFO record (``fields`` unused)."""
        second = int(created)
        if second != self._second:
            self._stamp(created)
        # %-formatting (``%03d`` truncates as ``int`` does): an f-string with
        # a format spec costs about twice as much.
        return "%s,%03d INFO %s: %s\n" % (self._text, (created - second) * 1000, name, message)  # noqa: UP031


class LogSink(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that redacts every line (no configured secret and no
    backend address, shown as ``<upstream1>``, reaches the log, whatever
    logged it: the library's router logs its retries with the provider's own
    error text) and buffers access lines (module docstring). ``redact``
    becomes the gateway's own once its backends are built (their keys and
    addresses are known only then)."""

    def __init__(self, stream: IO[str], redact: Any = _no_redaction) -> None:
        super().__init__(stream)
        self.redact = redact
        #: Access lines not yet written. A deque, appended to without the
        #: lock (``deque.append`` is atomic; taking the lock per line was a
        #: tenth of the line's cost) and drained under it (:meth:`_write_pending`):
        #: a line appended while another thread drains is written then or next time.
        self._pending: deque[str] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def filter(self, record: logging.LogRecord) -> Any:
        # The handler's own filters first (a parse error's quote is dropped),
        # then the redaction of what is left.
        if not super().filter(record):
            return False
        redact = self.redact
        if getattr(redact, "secrets", True) or getattr(redact, "names", True):
            record.msg = redact(record.getMessage())
            record.args = None
            if record.exc_info:  # a traceback's messages may quote a secret too
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True

    def access(self, name: str, message: str, fields: dict[str, Any] | None = None) -> None:
        """Buffer one INFO line of logger ``name``; ``fields``: the JSON
        format's access fields (docs/metrics.md). Called on the event loop's
        thread only (the access loggers')."""
        formatter: AccessFormat = self.formatter  # type: ignore[assignment]  # access_sink checked
        line = formatter.access_line(name, self.redact(message), fields, time.time())
        pending = self._pending
        pending.append(line)
        if len(pending) >= FLUSH_LINES:
            self.flush()
        elif self._timer is None:
            # Any thread that writes the buffer sets _timer to None before it
            # drains: a line it missed finds no timer here and sets one.
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on an event loop: nothing would flush it later
                self.flush()
            else:
                self._timer = loop.call_later(FLUSH_SECONDS, self.flush)

    def _write_pending(self) -> None:
        """Write the buffered lines (the caller holds the lock)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending = self._pending
        if not pending:
            return
        # As many as there are now; one appended meanwhile stays for the next write.
        text = "".join([pending.popleft() for _ in range(len(pending))])
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed: a log line is not worth a crash
            pass

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()
        super().flush()

    def emit(self, record: logging.LogRecord) -> None:
        # Called under the lock (Handler.handle); the buffered lines came first.
        if self._pending:
            self._write_pending()
        super().emit(record)


def access_sink(logger: logging.Logger) -> LogSink | None:
    """The sink an INFO line of ``logger`` reaches, when it is the only
    handler it reaches and can write the line itself; else None (the line
    goes through ``logging``, or nowhere when the level drops it: then
    ``isEnabledFor`` is false and the caller writes nothing either)."""
    found: logging.Handler | None = None
    node: logging.Logger | None = logger
    while node is not None:
        if node.handlers:
            if found is not None or len(node.handlers) > 1:
                return None
            found = node.handlers[0]
        if not node.propagate:
            break
        node = node.parent
    if (
        type(found) is LogSink
        and found.level <= logging.INFO
        and hasattr(found.formatter, "access_line")
    ):
        return found
    return None


__all__ = [
    "FLUSH_LINES",
    "FLUSH_SECONDS",
    "AccessFormat",
    "LogSink",
    "TextFormatter",
    "access_sink",
]
