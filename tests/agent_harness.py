"""One agent client (Claude Code or Codex CLI) through ``ails serve``, offline.

Run by tests/test_agents.py inside a network namespace of its own
(``unshare --net --map-root-user``) that holds only a loopback interface, so
nothing the agent tries can leave the machine however it tries::

    unshare -rn python tests/agent_harness.py claude|codex

In the namespace it brings ``lo`` up, starts tests/upstream.py (in a thread),
``ails serve`` in front of it (with a key and aliases for the agents' own model
names), a recording proxy between the agent and the gateway (what the agent
sends, what the gateway answers: statuses and headers), and an egress trap: an
HTTP proxy named in ``HTTPS_PROXY``/``HTTP_PROXY`` that refuses every request
and records where it was going (Claude Code and Codex both honour those
variables; the namespace stops anything that does not). It then runs the agent
once with a one-shot prompt under a timeout and prints one JSON report on
stdout: the agent's exit code and output, every request through the proxy, the
upstream's recorded chat requests, the gateway's log and the egress attempts.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

from gateway_proc import Gateway
from upstream import Upstream

ROOT = Path(__file__).resolve().parents[1]
AGENTS_BIN = ROOT / ".agents" / "node_modules" / ".bin"
KEY = "agent-test-key-0123456789"
#: What the upstream serves: ``test-model`` echoes the last message's words.
UPSTREAM_MODEL = "test-model"
CLAUDE_MODEL = "claude-sonnet-4-5"
CODEX_MODEL = "gpt-5-codex"
PROMPT = "Say hi"
AGENT_TIMEOUT_S = 120.0
_REFUSAL = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Recorder:
    """A reverse proxy in front of ``target`` that keeps what passes through:
    each request's method, path, headers and body, and the answer's status and
    headers. The answer is relayed as it arrives (streams stay streams)."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.exchanges: list[dict[str, Any]] = []
        self.url = ""
        self._session: ClientSession | None = None

    async def start(self) -> None:
        self._session = ClientSession(timeout=ClientTimeout(total=AGENT_TIMEOUT_S))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._relay)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record: dict[str, Any] = {
            "method": request.method,
            "path": request.path_qs,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "size": len(raw),
            "body": body,
        }
        self.exchanges.append(record)
        skip = {"host", "content-length", "transfer-encoding", "connection"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        url = self.target + request.path_qs
        async with self._session.request(request.method, url, data=raw, headers=headers) as r:
            record["status"] = r.status
            record["response_headers"] = {k.lower(): v for k, v in r.headers.items()}
            out_headers = {
                k: v for k, v in r.headers.items() if k.lower() not in skip | {"content-encoding"}
            }
            resp = web.StreamResponse(status=r.status, headers=out_headers)
            await resp.prepare(request)
            size = 0
            async for piece in r.content.iter_any():
                size += len(piece)
                await resp.write(piece)
            record["response_size"] = size
            await resp.write_eof()
            return resp


class EgressTrap:
    """An HTTP proxy that forwards nothing: it answers 403 to every request
    (``CONNECT host:443`` or an absolute URL) and records its first line."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self.url = ""

    async def start(self) -> None:
        server = await asyncio.start_server(self._refuse, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            self.attempts.append(line.decode("latin-1").strip())
            writer.write(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()


def _serve_in_thread(*servers: Recorder | EgressTrap) -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="agent-harness", daemon=True).start()
    for server in servers:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    return loop


def agent_command(agent: str, base_url: str, home: Path) -> tuple[list[str], dict[str, str]]:
    """The agent's command line and environment, as docs/agents.md gives them."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    if agent == "claude":
        env |= {
            "ANTHROPIC_BASE_URL": base_url,  # no /v1: Claude Code adds it
            "ANTHROPIC_AUTH_TOKEN": KEY,
            "DISABLE_TELEMETRY": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
        }
        return [str(AGENTS_BIN / "claude"), "-p", PROMPT, "--model", CLAUDE_MODEL], env
    if agent == "codex":
        codex_home = home / ".codex"
        codex_home.mkdir()
        (codex_home / "config.toml").write_text(codex_config(f"{base_url}/v1"))
        env |= {"CODEX_HOME": str(codex_home), "AILS_KEY": KEY}
        return [str(AGENTS_BIN / "codex"), "exec", "--skip-git-repo-check", PROMPT], env
    raise SystemExit(f"unknown agent {agent!r}: claude or codex")


def codex_config(base_url: str) -> str:
    return f"""\
model = "{CODEX_MODEL}"
model_provider = "ails"
check_for_update_on_startup = false

[analytics]
enabled = false

[model_providers.ails]
name = "ails"
base_url = "{base_url}"
env_key = "AILS_KEY"
wire_api = "responses"
"""


def run(agent: str) -> dict[str, Any]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix=f"ails-{agent}-") as tmp:
        home = Path(tmp)
        with Upstream(models=[UPSTREAM_MODEL]) as up:
            gw_args = ["--upstream", up.base_url, "--api-key", KEY, "--max-retries", "0",
                       "--alias", f"claude-*={UPSTREAM_MODEL}",
                       "--alias", f"{CODEX_MODEL}={UPSTREAM_MODEL}"]  # fmt: skip
            with Gateway(gw_args) as gw:
                recorder, trap = Recorder(gw.url), EgressTrap()
                _serve_in_thread(recorder, trap)
                cmd, env = agent_command(agent, recorder.url, home)
                env |= {"HTTPS_PROXY": trap.url, "HTTP_PROXY": trap.url, "ALL_PROXY": trap.url,
                        "NO_PROXY": "127.0.0.1,localhost"}  # fmt: skip
                started = time.monotonic()
                try:
                    done = subprocess.run(
                        cmd, env=env, cwd=home, stdin=subprocess.DEVNULL,
                        capture_output=True, text=True, timeout=AGENT_TIMEOUT_S,
                    )  # fmt: skip
                    rc, out, err = done.returncode, done.stdout, done.stderr
                except subprocess.TimeoutExpired as e:
                    rc, out, err = -1, str(e.stdout or ""), f"timed out: {e}"
                seconds = time.monotonic() - started
            gateway_log = gw.log  # after the gateway stopped: its last lines included
            upstream = [{"path": r.path, "size": len(r.raw), "body": r.body} for r in up.requests]
    return {
        "agent": agent,
        "command": cmd,
        "rc": rc,
        "stdout": out,
        "stderr": err[-4000:],
        "seconds": seconds,
        "exchanges": recorder.exchanges,
        "upstream": upstream,
        "gateway_log": gateway_log,
        "egress": trap.attempts,
    }


if __name__ == "__main__":
    json.dump(run(sys.argv[1]), sys.stdout)
