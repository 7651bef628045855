"""Terminal helpers: the spinner, colour rules, one-line errors and exit codes.

Rules kept here so every command follows them:

- stdout carries the answer (or the data asked for) and nothing else;
  notes, warnings, errors and the spinner go to stderr.
- No control codes where they would land in a file: colour only when the
  stream is a terminal and ``NO_COLOR`` is unset, the spinner only when stderr
  is a terminal.
- Exit codes: 0 ok, 1 runtime failure, 2 usage error, 130 interrupted.
  Errors are one line, ``ails: error: ...``, never a traceback.

The spinner is a dozen lines of our own rather than ``rich``: rich would add
~20 ms to every start and a dependency tree, for one animated character.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn, TextIO

import click

from ails.errors import AilsError, AuthFailed, BadRequest

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def color_enabled(stream: TextIO | None) -> bool:
    return (
        is_terminal(stream)
        and "NO_COLOR" not in os.environ
        and os.environ.get("TERM", "") != "dumb"
    )


def style(text: str, stream: TextIO | None = None, **styles: Any) -> str:
    """``click.style`` when colour is allowed on ``stream`` (stdout by default)."""
    if color_enabled(stream if stream is not None else sys.stdout):
        return click.style(text, **styles)
    return text


def note(message: str) -> None:
    """Progress or information for the person at the terminal: stderr."""
    click.echo(style(message, sys.stderr, dim=True), err=True)


def warn(message: str) -> None:
    click.echo(f"{style('ails: warning:', sys.stderr, fg='yellow')} {message}", err=True)


def error(message: str) -> None:
    click.echo(f"{style('ails: error:', sys.stderr, fg='red', bold=True)} {message}", err=True)


def help_without_subcommand(ctx: click.Context) -> None:
    """``ails config`` alone asks what the group can do: its help on stdout,
    exit 0 (click's own ``no_args_is_help`` makes that a usage error, exit 2)."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(EXIT_OK)


def exit_code_for(exc: AilsError) -> int:
    """A request a provider refuses because of a ``-o`` option or a ``--schema`` it
    cannot enforce is a usage error; every other failure is a runtime failure."""
    if isinstance(exc, BadRequest) and exc.code in (
        "unsupported_parameter",
        "unsupported_schema",
        "invalid_schema",
    ):
        return EXIT_USAGE
    return EXIT_FAILURE


def run_main(invoke: Callable[[], Any]) -> NoReturn:
    """Run click in non-standalone mode and turn every failure a user can cause
    into one line on stderr and the documented exit code."""
    code = EXIT_OK
    try:
        result = invoke()
        if isinstance(result, int):  # click returns the code of ctx.exit(n)
            code = result
    except click.UsageError as exc:
        # Pointing at --help helps with the parser's errors (a wrong option or
        # a missing argument), not with a message that already says what to do.
        parser = (
            click.NoSuchOption,
            click.BadOptionUsage,
            click.BadArgumentUsage,
            click.MissingParameter,
        )
        hint = ""
        if exc.ctx is not None and isinstance(exc, parser):
            hint = f" (see '{exc.ctx.command_path} --help')"
        error(f"{exc.format_message()}{hint}")
        code = EXIT_USAGE
    except click.ClickException as exc:
        error(exc.format_message())
        code = exc.exit_code
    except click.Abort as exc:
        # click turns Ctrl-C (and Ctrl-D at one of its prompts) into Abort.
        if isinstance(exc.__cause__, KeyboardInterrupt):
            code = EXIT_INTERRUPTED
        else:
            error("aborted")
            code = EXIT_FAILURE
    except KeyboardInterrupt:
        click.echo("", err=True)
        code = EXIT_INTERRUPTED
    except AilsError as exc:
        message = str(exc)
        if isinstance(exc, AuthFailed) and exc.provider:
            message += f" (store a key with: ails keys set {exc.provider})"
        error(message)
        code = exit_code_for(exc)
    except Exception as exc:
        # sqlite3 is imported only by the commands that use it; name its errors
        # without importing it here.
        sqlite3 = sys.modules.get("sqlite3")
        if sqlite3 is not None and isinstance(exc, sqlite3.Error):
            error(f"the log database failed: {exc} (see: ails logs status)")
            code = EXIT_FAILURE
        else:
            raise
    sys.stdout.flush()
    sys.exit(code)


class Spinner:
    """An animated character on stderr until :meth:`stop`; nothing at all when
    stderr is not a terminal. It appears only after ``delay`` seconds, so
    quick answers do not flicker."""

    def __init__(
        self,
        label: str = "",
        *,
        stream: TextIO | None = None,
        delay: float = 0.15,
        interval: float = 0.08,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.delay = delay
        self.interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._drawn = False
        self._line_open = False  # someone else's line on stderr is not finished yet
        self._guard: _SpinnerSafeStream | None = None
        encoding = (getattr(self.stream, "encoding", None) or "").lower()
        self.frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏" if "utf" in encoding else "|/-\\"

    def start(self) -> Spinner:
        if self._thread is None and is_terminal(self.stream) and os.environ.get("TERM") != "dumb":
            if sys.stderr is self.stream:
                # Others write to stderr meanwhile (the embedded model's "loading
                # model ..." line, from another thread): through the guard, their
                # lines never share one with the spinner.
                self._guard = _SpinnerSafeStream(self, self.stream)
                sys.stderr = self._guard
            self._thread = threading.Thread(target=self._run, name="ails-spinner", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        if self._stop.wait(self.delay):
            return
        i = 0
        while True:
            with self._lock:
                if self._stop.is_set():
                    return
                if not self._line_open:  # never draw into the middle of someone's line
                    frame = self.frames[i % len(self.frames)]
                    self.stream.write(f"\r{frame} {self.label}")
                    self.stream.flush()
                    self._drawn = True
            i += 1
            if self._stop.wait(self.interval):
                return

    def set_label(self, label: str) -> None:
        """Say something else from the next frame on (a shorter label must not
        leave the end of the longer one on the line)."""
        with self._lock:
            if label != self.label:
                self._erase()
                self.label = label

    def _erase(self) -> None:
        """With the lock held: clear the spinner's line if it is drawn."""
        if self._drawn:
            self.stream.write("\r\x1b[K")  # back to column 0, erase the line
            self.stream.flush()
            self._drawn = False

    def stop(self) -> None:
        """Stop and erase the spinner; when this returns, nothing more is drawn."""
        if self._thread is None:
            return
        with self._lock:
            self._stop.set()
            self._erase()
            if self._guard is not None and sys.stderr is self._guard:
                sys.stderr = self.stream
            self._guard = None
        self._thread.join()
        self._thread = None

    def __enter__(self) -> Spinner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _SpinnerSafeStream:
    """``sys.stderr`` while a spinner runs: a write first erases the spinner's
    line, and the spinner waits until the line written ends, so a progress
    line and the spinner never share one line. Everything else is the real
    stream's."""

    def __init__(self, spinner: Spinner, stream: TextIO) -> None:
        self._spinner = spinner
        self._stream = stream

    def write(self, text: str) -> int:
        with self._spinner._lock:
            if text:
                self._spinner._erase()
                self._spinner._line_open = not text.endswith("\n")
            return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
