"""The CLI's spinner and other writers of stderr: a progress line (the
embedded model's "loading model ..." comes from another thread) never shares
a line with the spinner. A terminal is stood in for by a text stream that
says it is one; the spinner's frames are waited for, never timed."""

from __future__ import annotations

import io
import sys
import threading
import time

import pytest

from ails.cli._ui import Spinner

ERASE = "\r\x1b[K"


class FakeTerminal(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.005)


def terminal_as_stderr(monkeypatch: pytest.MonkeyPatch) -> FakeTerminal:
    """Called in the test itself: pytest's capture sets sys.stderr again after
    a fixture's setup."""
    fake = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", fake)
    monkeypatch.setenv("TERM", "xterm")
    return fake


def frames(text: str) -> int:
    return text.count("\r⠋") + sum(text.count(f"\r{c}") for c in "⠙⠹⠸⠼⠴⠦⠧⠇⠏")


def test_a_progress_line_from_another_thread_gets_a_line_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    term = terminal_as_stderr(monkeypatch)
    spinner = Spinner("local/default", delay=0, interval=0.001).start()
    wait_for(lambda: frames(term.getvalue()) >= 1, "a first frame")
    writer = threading.Thread(
        target=lambda: print("ails: loading model /x/model.gguf…", file=sys.stderr, flush=True)
    )
    writer.start()
    writer.join()
    drawn = len(term.getvalue())
    wait_for(lambda: frames(term.getvalue()[drawn:]) >= 2, "frames after the line")
    spinner.stop()
    out = term.getvalue()
    assert sys.stderr is term  # the real stream is back
    line = "ails: loading model /x/model.gguf…\n"
    at = out.index(line)
    assert out[:at].endswith(ERASE)  # the spinner's line was erased first...
    assert out[at + len(line)] == "\r" and frames(out[at + len(line) :]) >= 2
    assert out.endswith(ERASE)  # ...drawn again below it, and erased at the end


def test_the_spinner_waits_for_a_line_to_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """A line written in two pieces (print's text, then its newline) is not cut
    in half by a frame."""
    term = terminal_as_stderr(monkeypatch)
    spinner = Spinner("m", delay=0, interval=0.001).start()
    wait_for(lambda: frames(term.getvalue()) >= 1, "a first frame")
    sys.stderr.write("ails: joining model parts…")
    written = len(term.getvalue())
    time.sleep(0.05)  # ~50 frame intervals in which the spinner must stay quiet
    assert term.getvalue()[written:] == ""
    sys.stderr.write("\n")
    wait_for(lambda: frames(term.getvalue()[written:]) >= 1, "a frame after the line ended")
    spinner.stop()
    assert "ails: joining model parts…\n" in term.getvalue()


def test_no_spinner_and_no_guard_when_stderr_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    spinner = Spinner("m", delay=0, interval=0.001).start()
    assert sys.stderr is piped
    print("ails: loading model x…", file=sys.stderr)
    spinner.stop()
    assert piped.getvalue() == "ails: loading model x…\n"
