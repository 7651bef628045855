"""A real ``redis-server`` for tests: a free loopback port, a temporary directory,
no persistence. ::

    with RedisServer(tmp_path) as r:     # r.url == "redis://127.0.0.1:PORT/0"
        ...
        r.stop(); r.start()              # a restart, on the same port

:func:`require_redis_server` finds the binary; without it the tests skip, except
in CI (``CI`` set), where they fail: ``scripts/install-redis.sh`` installs it.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


def require_redis_server() -> str:
    """The path of ``redis-server``; the test command installs it, so without it
    the test fails (a skip would hide the missing install)."""
    path = shutil.which("redis-server")
    if path is None:
        pytest.fail("redis-server is not installed (scripts/install-redis.sh installs it)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, directory: Path, *, executable: str | None = None) -> None:
        self.executable = executable or require_redis_server()
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - the child holds it
        try:
            args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
            self.proc = subprocess.Popen(
                # No persistence: a restart starts empty, like a fresh Redis.
                [self.executable, *args, "--save", "", "--appendonly", "no"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while not _pong(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                text = (self.directory / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server did not start:\n{text[-2000:]}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def pause(self) -> None:
        """SIGSTOP: connections are accepted but never answered (a hung Redis)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.resume()  # a stopped process cannot act on SIGTERM
        self.stop()


__all__ = ["RedisServer", "free_port", "require_redis_server"]
