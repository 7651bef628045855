"""Peer gateways for the benchmark: LiteLLM's proxy and g4f's API server.

Each peer lives in its own virtual environment under ``bench/.peers/<name>/``
(gitignored), installed at a pinned version on request, never as a dependency
of ails. Each runs as its own process on 127.0.0.1 with the environment that
lets it start offline (see shared/docs/peers.md):

* LiteLLM: ``LITELLM_MASTER_KEY`` (clients send it as the Bearer token),
  ``OPENAI_API_KEY`` for the upstream, ``LITELLM_LOCAL_MODEL_COST_MAP=True``
  (or importing it tries the network), ``LITELLM_LOG=ERROR`` (no per-request
  access log, like the other targets). Its CLI ``--model openai/x`` sends every
  request upstream as model ``x`` whatever the client asked, which would lose
  ``paced:N:MS``; so it gets a config file naming each benchmark model.
* g4f: ``G4F_CACHE_DIR`` holding today's ``.models/<date>/providers.json``, as it
  dies offline fetching that list otherwise; one worker.

    python bench/peers.py install [litellm g4f]   # create the venvs (minutes)
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from _procs import HERE, free_port, spawn, stop, tail, wait_http

PEERS_DIR = HERE / ".peers"
MASTER_KEY = "sk-bench-master"
INSTALL_TIMEOUT_S = 1200.0
START_TIMEOUT_S = 120.0


class PeerError(RuntimeError):
    """A peer could not be installed or started; the message says exactly why."""


@dataclass(frozen=True)
class PeerSpec:
    name: str
    requirement: str  # pinned
    dist: str  # distribution whose version is reported
    bad_versions: tuple[str, ...] = ()


SPECS = {
    # 1.82.7 and 1.82.8 shipped a credential stealer: never those.
    "litellm": PeerSpec("litellm", "litellm[proxy]==1.108.7", "litellm", ("1.82.7", "1.82.8")),
    "g4f": PeerSpec("g4f", "g4f[api]==8.8.6", "g4f"),
}


@dataclass
class Peer:
    """A running peer: where to send requests and how."""

    name: str
    url: str  # base URL ending in /v1
    key: str | None
    version: str
    pid: int  # leader of its process group


def venv_dir(name: str) -> Path:
    return PEERS_DIR / name / "venv"


def venv_bin(name: str, exe: str) -> Path:
    return venv_dir(name) / "bin" / exe


def installed_version(spec: PeerSpec) -> str | None:
    py = venv_bin(spec.name, "python")
    if not py.exists():
        return None
    code = f"import importlib.metadata as m; print(m.version({spec.dist!r}))"
    try:
        r = subprocess.run(
            [str(py), "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
    except subprocess.TimeoutExpired:
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def _run_logged(cmd: Sequence[str], log: Path, timeout: float) -> None:
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        try:
            r = subprocess.run(
                list(cmd),
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as e:
            raise PeerError(f"`{' '.join(cmd)}` timed out after {timeout:.0f} s") from e
    if r.returncode != 0:
        raise PeerError(f"`{' '.join(cmd)}` exited {r.returncode}:\n{tail(log, 12)}")


def install(name: str, say: Callable[[str], None] = print) -> str:
    """Create ``bench/.peers/<name>/venv`` with the pinned peer; return its version."""
    spec = SPECS[name]
    pinned = spec.requirement.split("==")[1]
    have = installed_version(spec)
    if have == pinned:
        return have
    root = PEERS_DIR / name
    root.mkdir(parents=True, exist_ok=True)
    log = root / "install.log"
    log.write_text("")
    say(f"installing {spec.requirement} into {venv_dir(name)} (log: {log}) ...")
    if not venv_bin(name, "python").exists():
        _run_logged([sys.executable, "-m", "venv", str(venv_dir(name))], log, 300)
    pip = str(venv_bin(name, "pip"))
    _run_logged(
        [pip, "install", "--disable-pip-version-check", "-q", spec.requirement],
        log,
        INSTALL_TIMEOUT_S,
    )
    have = installed_version(spec)
    if have is None:
        raise PeerError(f"{spec.dist} is not importable after install; see {log}")
    if have in spec.bad_versions:
        raise PeerError(f"{spec.dist} {have} is a known-compromised release; refusing to run it")
    if have != pinned:
        raise PeerError(f"{spec.dist} {have} installed, {pinned} pinned")
    return have


def _litellm_config(upstream: str, models: Sequence[str]) -> Path:
    # YAML is a superset of JSON: no YAML writer needed.
    entries = [
        {
            "model_name": m,
            "litellm_params": {"model": f"openai/{m}", "api_base": upstream, "api_key": "sk-x"},
        }
        for m in models
    ]
    path = PEERS_DIR / "litellm" / "config.yaml"
    path.write_text(json.dumps({"model_list": entries}, indent=1))
    return path


@contextmanager
def litellm(upstream: str, models: Sequence[str]) -> Iterator[Peer]:
    """Run LiteLLM's proxy (one worker) in front of ``upstream``; yield it."""
    version = installed_version(SPECS["litellm"])
    if version is None:
        raise PeerError("not installed (run with --peers)")
    port = free_port()
    cfg = _litellm_config(upstream, models)
    log = PEERS_DIR / "litellm" / "server.log"
    env = {
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "OPENAI_API_KEY": "sk-x",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
    }
    cmd = [
        str(venv_bin("litellm", "litellm")),
        "--config",
        str(cfg),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    proc = spawn(cmd, env=env, log=log, cwd=PEERS_DIR / "litellm")
    try:
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, START_TIMEOUT_S, log)
        yield Peer("litellm", f"http://127.0.0.1:{port}/v1", MASTER_KEY, version, proc.pid)
    finally:
        stop(proc)


def _g4f_cache() -> Path:
    cache = PEERS_DIR / "g4f" / "cache"
    today = datetime.date.today().isoformat()
    d = cache / ".models" / today
    d.mkdir(parents=True, exist_ok=True)
    default = {"baseUrl": "http://127.0.0.1:9/v1"}
    providers = {"providers": {"default": default}, "defaultModels": {}}
    (d / "providers.json").write_text(json.dumps(providers))
    return cache


@contextmanager
def g4f(upstream: str) -> Iterator[Peer]:
    """Run g4f's API server (one worker) in front of ``upstream``; yield it."""
    version = installed_version(SPECS["g4f"])
    if version is None:
        raise PeerError("not installed (run with --peers)")
    port = free_port()
    log = PEERS_DIR / "g4f" / "server.log"
    env = {"G4F_CACHE_DIR": str(_g4f_cache())}
    cmd = [
        str(venv_bin("g4f", "g4f")),
        "api",
        "--bind",
        f"127.0.0.1:{port}",
        "--no-gui",
        "--provider",
        upstream,
        "--model",
        "x",
        "--disable-pa-auto-download",
        "--ignore-cookie-files",
        "--no-access-log",
    ]
    proc = spawn(cmd, env=env, log=log, cwd=PEERS_DIR / "g4f")
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", proc, START_TIMEOUT_S, log)
        yield Peer("g4f", f"http://127.0.0.1:{port}/v1", None, version, proc.pid)
    finally:
        stop(proc)


def main() -> int:
    names = sys.argv[2:] or list(SPECS)
    if sys.argv[1:2] != ["install"] or any(n not in SPECS for n in names):
        print(f"usage: {sys.argv[0]} install [{' '.join(SPECS)}]", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        try:
            print(f"{name} {install(name)}")
        except PeerError as e:
            print(f"{name}: {e}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
