"""Load llama.cpp (through ``xllamacpp``) once per process and settings, lazily.

Nothing here runs at import: ``xllamacpp`` is imported inside :func:`get_runtime`
on first use, after ``OMP_WAIT_POLICY=PASSIVE`` is put in the environment
(libgomp reads it when the library loads; without it, OpenMP threads spin and
two of them fell to a few tokens/s whenever another process wanted a core).

The runtime always starts an HTTP listener next to the model. We cannot keep it
from opening, so we make it unreachable: it binds a UNIX socket in a fresh 0700
temp dir (no TCP port at all), we unlink the socket and the dir as soon as the
model is loaded, and it gets a random API key besides. See docs/local-model.md.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ails.errors import ConfigError
from ails.local.model_file import ModelFile, resolve_model
from ails.local.slots import SlotGate
from ails.local.tokenizer import Tokenizer, tokenizer_for
from ails.local.weights import INSTALL_HINT, Progress, stderr_progress

DEFAULT_N_CTX = 4096
DEFAULT_PARALLEL = 2
#: Decoding a 0.5B model is memory-bound: past a few threads it stops scaling and
#: only loses more when other processes compete (docs/local-model.md has numbers).
MAX_DEFAULT_THREADS = 4
#: Cap on the runtime's host-RAM prompt cache (its default is 8 GiB).
PROMPT_CACHE_MIB = 256
#: The name the runtime reports in every chunk's ``model`` field.
MODEL_ALIAS = "default"


@dataclass(frozen=True)
class Settings:
    """What the caller asked for; ``None`` means environment variable, then default."""

    model_path: str | None = None
    threads: int | None = None
    n_ctx: int | None = None
    parallel: int | None = None

    def resolved(self) -> Settings:
        """Fill the gaps from ``AILS_LOCAL_*`` and the defaults (no disk access)."""
        return Settings(
            model_path=self.model_path or os.environ.get("AILS_LOCAL_MODEL") or None,
            threads=self.threads or _env_int("AILS_LOCAL_THREADS") or default_threads(),
            n_ctx=self.n_ctx or _env_int("AILS_LOCAL_CTX") or DEFAULT_N_CTX,
            parallel=self.parallel or _env_int("AILS_LOCAL_PARALLEL") or DEFAULT_PARALLEL,
        )


def default_threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))  # honours taskset and container CPU sets
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_THREADS))


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise ConfigError(f"{name}={raw!r} must be at least 1")
    return value


@dataclass(frozen=True)
class Runtime:
    """A loaded model. ``n_ctx`` is the context of *one* request (one slot)."""

    server: Any
    model: ModelFile
    threads: int
    n_ctx: int
    parallel: int
    load_seconds: float
    #: The model's tokenizer rebuilt in Python (local/tokenizer.py), to count a
    #: prompt before it queues; None for a model whose tokenizer is not rebuilt.
    tokenizer: Tokenizer | None = field(default=None, compare=False)
    #: The slots and the line of requests waiting for one (local/slots.py).
    gate: SlotGate = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gate", SlotGate(self.parallel))


_lock = threading.Lock()
_runtimes: dict[Settings, Runtime] = {}


def loaded(settings: Settings) -> Runtime | None:
    """The runtime for these settings if it is already loaded (no lock: a dict read)."""
    return _runtimes.get(settings.resolved())


def get_runtime(settings: Settings, progress: Progress = stderr_progress) -> Runtime:
    """Load once per process and settings; concurrent first callers wait for one load."""
    key = settings.resolved()
    runtime = _runtimes.get(key)
    if runtime is not None:
        return runtime
    with _lock:
        runtime = _runtimes.get(key)
        if runtime is None:
            runtime = _load(key, progress)
            _runtimes[key] = runtime
        return runtime


def _load(settings: Settings, progress: Progress) -> Runtime:
    assert settings.threads and settings.n_ctx and settings.parallel
    model = resolve_model(settings.model_path, progress)
    xllamacpp = _import_runtime()

    params = xllamacpp.CommonParams()
    params.model.path = str(model.path)
    params.model_alias = {MODEL_ALIAS}
    # The runtime splits n_ctx evenly between its slots: give each request n_ctx.
    params.n_ctx = settings.n_ctx * settings.parallel
    params.n_parallel = settings.parallel
    params.cpuparams.n_threads = settings.threads
    params.cpuparams_batch.n_threads = settings.threads
    params.verbosity = -1  # its own log would land on stderr between our lines
    params.fit_params = False  # keep n_ctx as configured instead of "fitting" it to RAM
    params.cache_ram_mib = PROMPT_CACHE_MIB
    # The listener: nothing beyond what the in-process calls need.
    params.ui = False
    params.endpoint_slots = False
    params.endpoint_metrics = False
    params.endpoint_props = False
    params.n_threads_http = 1
    params.api_keys = [secrets.token_urlsafe(32)]
    socket_dir = _private_socket_dir()
    params.hostnames = [os.path.join(socket_dir, "l.sock")] if socket_dir else ["127.0.0.1"]
    params.port = 0  # used only without a UNIX socket: a random free loopback port

    progress(f"loading model {model.path}…")
    started = time.perf_counter()
    # Read from the header beside the load (~0.25 s of Python, mostly while the
    # runtime's own loading has let go of the GIL).
    tokenizer: list[Tokenizer | None] = []
    reader = threading.Thread(
        target=lambda: tokenizer.append(tokenizer_for(model.path)),
        name="ails-tokenizer",
        daemon=True,
    )
    reader.start()
    try:
        server = xllamacpp.Server(params)
    except RuntimeError as exc:
        raise ConfigError(
            f"the local runtime could not load {model.path} ({exc}); check that it is a "
            "complete GGUF model file this llama.cpp build supports",
            code="local_load_failed",
        ) from exc
    finally:
        if socket_dir:
            # The bound socket keeps working for the runtime but no path leads to it now.
            shutil.rmtree(socket_dir, ignore_errors=True)
    reader.join()
    elapsed = time.perf_counter() - started
    _register_exit_hook()
    return Runtime(
        server=server,
        model=model,
        threads=settings.threads,
        n_ctx=settings.n_ctx,
        parallel=settings.parallel,
        load_seconds=elapsed,
        tokenizer=tokenizer[0] if tokenizer else None,
    )


def _import_runtime() -> Any:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import xllamacpp
    except ImportError as exc:
        raise ConfigError(
            f"the local model needs the xllamacpp runtime ({exc}); install it with {INSTALL_HINT}",
            code="local_runtime_missing",
        ) from exc
    return xllamacpp


def _private_socket_dir() -> str | None:
    """A 0700 dir for the listener's UNIX socket, or None to fall back to loopback TCP."""
    if os.name != "posix":
        return None
    path = tempfile.mkdtemp(prefix="ails-")
    if len(path) + len("/l.sock") >= 104:  # sun_path is 104-108 bytes
        os.rmdir(path)
        return None
    return path


_exit_hook_registered = False


def _register_exit_hook() -> None:
    """At exit, stop generations still running in their threads (see bridge)."""
    global _exit_hook_registered
    if _exit_hook_registered:
        return
    import atexit

    from ails.local.generation import stop_all

    atexit.register(stop_all)
    _exit_hook_registered = True
