"""A server process of the tests' own that prints ``READY <port>`` once it listens."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any


@contextmanager
def ready_server(cmd: list[str], *, stderr: int | IO[Any] | None = None) -> Iterator[str]:
    """Start ``cmd`` on 127.0.0.1, yield its ``http://127.0.0.1:PORT/v1``, stop it."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY "), line
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
