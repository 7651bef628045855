"""Test helpers for the gateway: ``ails serve`` as a real subprocess, and a tiny
upstream that always fails.

``Gateway(args)`` starts ``ails serve --port 0 ARGS`` on 127.0.0.1, reads the
URL it prints once it listens, keeps draining its stderr (the log) into
``lines``, and stops it with SIGTERM (then SIGKILL).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

_START = "from ails.cli import main; main()"


def _start_code(nofile: int | None) -> str:
    if nofile is None:
        return _START
    limit = f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile}))"
    return f"{limit}; {_START}"


def _message(line: str) -> str:
    """A stderr line's text: itself, or a JSON log line's ``message`` (--log-format json)."""
    if line.startswith("{"):
        try:
            said = json.loads(line).get("message")
        except ValueError:
            return line
        return said if isinstance(said, str) else line
    return line


class Gateway:
    def __init__(
        self,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        start_timeout: float = 60.0,
        nofile: int | None = None,
    ) -> None:
        self.args = ["serve", "--port", "0", *args]
        #: An open-file limit (soft and hard) for the process, to run it out of descriptors.
        self.nofile = nofile
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.start_timeout = start_timeout
        self.lines: list[str] = []
        self.url = ""
        #: ``--metrics-port``'s URL of GET /metrics, once it listens.
        self.metrics_url = ""
        self.proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def start(self) -> Gateway:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _start_code(self.nofile), *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        self._reader = threading.Thread(target=self._read, name="gateway-stderr", daemon=True)
        self._reader.start()
        if not self._ready.wait(self.start_timeout) or not self.url:
            self.stop()
            raise RuntimeError(f"ails serve did not start:\n{self.log}")
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            self.lines.append(line)
            said = _message(line)
            if said.startswith("ails: metrics on "):
                self.metrics_url = said.split()[3]
            if said.startswith("ails: serving "):
                self.url = said.split()[2]
                self._ready.set()
        self._ready.set()  # the process ended (before or after it served)

    def wait_for_log(self, text: str, timeout: float = 5.0) -> bool:
        """Poll until a log line contains ``text`` (the access log is written
        just after the response)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in list(self.lines)):
                return True
            time.sleep(0.01)
        return False

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; return the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        return proc.returncode

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_serve(
    args: Sequence[str], *, timeout: float = 30.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``ails serve ARGS`` to completion (for commands expected to refuse),
    with ``env`` added to the environment."""
    return subprocess.run(
        [sys.executable, "-c", _START, "serve", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


class StatusUpstream:
    """Lists ``models``; answers every chat request with HTTP ``status`` and an
    OpenAI error body, or with ``status=0`` never answers, counting in
    ``cancelled`` the requests whose client went away. Runs its own loop in a
    daemon thread, like ``Upstream``."""

    def __init__(self, models: list[str], status: int) -> None:
        self.models = models
        self.status = status
        self.requests = 0
        self.cancelled = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> StatusUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._astart(), self._loop).result(10)
        return self

    async def _astart(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "owned_by": "x"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.Response:
        self.requests += 1
        await request.read()
        if self.status == 0:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        body: dict[str, Any] = {
            "error": {"message": f"always {self.status}", "type": "x", "code": "always"}
        }
        return web.json_response(body, status=self.status)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
