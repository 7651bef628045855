"""Run the real ``ails serve`` with the chat page, in a subprocess, for browser tests.

``GatewayProcess(args).start()`` runs ``ails serve --port P ARGS...`` on a free
port of 127.0.0.1 and returns once ``/health`` answers: the tests drive the
real CLI, the real gateway and the real page.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

__all__ = ["GatewayProcess", "free_port"]

_HERE = Path(__file__).resolve()
_SRC = _HERE.parents[1] / "src"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    """``ails serve`` with the page, on 127.0.0.1, until ``stop()``."""

    def __init__(self, args: list[str], *, startup_timeout: float = 60.0) -> None:
        self.args = list(args)
        self.startup_timeout = startup_timeout
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def log_text(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def start(self) -> GatewayProcess:
        self.port = free_port()
        serve_args = ["--host", "127.0.0.1", "--port", str(self.port), *self.args]
        code = "import sys; from ails.cli import main; sys.argv[0] = 'ails'; main()"
        cmd = [sys.executable, "-c", code, "serve", *serve_args]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SRC), env.get("PYTHONPATH")]))
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"ails serve exited ({self._proc.returncode}):\n{self.log_text()}"
                )
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"{self.url}health", timeout=1) as resp,
            ):
                if resp.status == 200:
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ails serve did not answer /health:\n{self.log_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def close(self) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
