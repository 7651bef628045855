"""Start and stop benchmark servers as subprocesses on 127.0.0.1.

Every process is started in its own session (process group) and stopped with
SIGTERM to the group, then SIGKILL after a timeout; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


class StartError(RuntimeError):
    """A server did not come up; the message says why (with its log's tail)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(
    cmd: Sequence[str],
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    stdout_pipe: bool = False,
    cwd: Path | None = None,
) -> subprocess.Popen[str]:
    """Start ``cmd`` in its own process group; output to ``log`` (or a pipe, or nowhere)."""
    out: int | IO[str]
    if stdout_pipe:
        out = subprocess.PIPE
    elif log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "w")  # noqa: SIM115 - handed to the child, closed below
    else:
        out = subprocess.DEVNULL
    try:
        return subprocess.Popen(
            list(cmd),
            stdout=out,
            stderr=subprocess.STDOUT if log is not None else None,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    finally:
        if not isinstance(out, int):
            out.close()


def stop(proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL it if still alive after ``timeout`` s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    else:
        # The leader is gone; make sure nothing it started lingers.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    if proc.stdout is not None:
        proc.stdout.close()


def tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def read_ready(proc: subprocess.Popen[str], timeout: float) -> int:
    """Wait (bounded) for the ``READY <port>`` line a bench server prints; return the port."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            line = proc.stdout.readline()
            if not line:
                raise StartError(f"exited with {proc.wait(timeout=5)} before READY")
            if line.startswith("READY"):
                return int(line.split()[1])
    raise StartError(f"no READY line within {timeout:.0f} s")


def wait_http(
    url: str,
    proc: subprocess.Popen[str],
    timeout: float,
    log: Path | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Poll ``url`` until the server answers with any HTTP status (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"exited with status {proc.returncode}"
            raise StartError(msg + (f"; log tail:\n{tail(log)}" if log else ""))
        req = urllib.request.Request(url, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(req, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered: that is all "up" means here
        except (OSError, ValueError) as e:
            last = repr(e)
        time.sleep(0.2)
    msg = f"not answering {url} after {timeout:.0f} s ({last})"
    raise StartError(msg + (f"; log tail:\n{tail(log)}" if log else ""))


@dataclass(frozen=True)
class Server:
    """A running server: its base URL (``http://127.0.0.1:PORT/v1``) and process id."""

    url: str
    pid: int


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by every process in ``pid``'s group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        f = stat[stat.rindex(")") + 2 :].split()  # fields from the 3rd (state) on
        if int(f[2]) == pid:  # pgrp
            total += int(f[11]) + int(f[12])  # utime, stime
    return total / tick


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` onto ``cpus`` (threads it starts later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(task.name), cpus)


def pin_group(pgid: int, cpus: set[int]) -> None:
    """Every thread of every process in process group ``pgid`` onto ``cpus``
    (a server started by :func:`spawn` leads its own group, workers included)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[2]) == pgid:
                pin(int(d.name), cpus)
        except (OSError, ValueError):  # a process that just ended
            continue


@contextmanager
def bench_server(script: str, *args: str, timeout: float = 30.0) -> Iterator[Server]:
    """Run ``bench/<script> --port 0 ARGS`` (it prints ``READY <port>``); yield it."""
    cmd = [sys.executable, str(HERE / script), "--port", "0", *args]
    proc = spawn(cmd, stdout_pipe=True)
    try:
        port = read_ready(proc, timeout)
        yield Server(f"http://127.0.0.1:{port}/v1", proc.pid)
    finally:
        stop(proc)


@contextmanager
def mock_upstream_server(models: Sequence[str] = ("x",), loop: str = "uvloop") -> Iterator[Server]:
    """A running mock upstream; ``models``: the names its ``GET /v1/models`` lists
    (it answers any name)."""
    with bench_server("mock_upstream.py", "--models", ",".join(models), "--loop", loop) as server:
        yield server


@contextmanager
def mock_upstream(models: Sequence[str] = ("x",)) -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:PORT/v1``) of a running mock upstream."""
    with mock_upstream_server(models) as server:
        yield server.url


@contextmanager
def passthrough_proxy(upstream: str, loop: str = "uvloop") -> Iterator[Server]:
    """Run bench/passthrough_proxy.py forwarding to ``upstream``."""
    with bench_server("passthrough_proxy.py", "--upstream", upstream, "--loop", loop) as server:
        yield server


def ails_executable() -> Path:
    return Path(sys.executable).with_name("ails")


def ails_serve_available() -> str | None:
    """None when ``ails serve`` can run here, else why not (one line)."""
    exe = ails_executable()
    if not exe.exists():
        return f"{exe} not found"
    if not (ROOT / "src" / "ails" / "server" / "app.py").exists():
        return "src/ails/server/app.py does not exist yet"
    try:
        r = subprocess.run(
            [str(exe), "serve", "--help"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return "`ails serve --help` did not answer within 30 s"
    if r.returncode != 0:
        last = (r.stderr or r.stdout).strip().splitlines()[-1:] or [""]
        return f"`ails serve --help` exited {r.returncode}: {last[0]}"
    return None


@contextmanager
def ails_gateway(
    upstream: str,
    log: Path,
    timeout: float = 30.0,
    *,
    key: str | None = None,
    loop: str = "uvloop",
    access_log: bool = True,
    extra: Sequence[str] = (),
) -> Iterator[Server]:
    """Run ``ails serve`` against ``upstream`` as a user runs it: with a client
    key (``key``) and the default access log (to ``log``)."""
    port = free_port()
    cmd = [
        str(ails_executable()),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--upstream",
        upstream,
    ]
    if not access_log:
        cmd.append("--no-access-log")
    if key:
        cmd += ["--api-key", key]
    cmd += list(extra)
    # The loop by its environment variable, which an older ails serve (one
    # without --loop, measured for a before/after table) ignores.
    proc = spawn(cmd, log=log, env={"AILS_SERVE_LOOP": loop})
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout, log)
        yield Server(f"http://127.0.0.1:{port}/v1", proc.pid)
    finally:
        stop(proc)
