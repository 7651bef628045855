"""Rate limits per API key: requests per minute and tokens per minute.

Limits are counted in the gateway's :class:`~ails.server.state.StateStore`
(in memory, or in Redis shared by every replica) in fixed one-minute windows
aligned to the Unix epoch, under the key's SHA-256 digest: the key itself is
never stored.

Requests (RPM) are charged before the request goes on, atomically, so racing
requests cannot both take the last unit. Tokens (TPM) are known only once the
answer is done, so they are enforced in two steps: a request is admitted while
the key's token window still has tokens left, and the tokens it actually used
(the backend's ``usage``; for streams the gateway asks the backend for it, and
drops the usage chunk again when the client did not ask; an estimate when the
backend reports none) are added afterwards, off the answer's path: each
replica writes the tokens of all its answers in one batch at most every
:data:`FLUSH_S` seconds (one round trip to Redis, however busy it is). A key can
thus overshoot its TPM by the tokens of the requests in flight, or finished in
the last :data:`FLUSH_S`, when it ran out; it then waits for the window to reset.

Refusals are 429 ``rate_limit_exceeded`` with ``retry-after`` (whole seconds,
which the openai SDK reads) and OpenAI's ``x-ratelimit-*`` headers, which are
also sent on the answers of rate-limited keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ails.errors import ConfigError
from ails.keyrules import read_key
from ails.server.auth import Caller
from ails.server.errors import GatewayError
from ails.server.state import Count, Counter, StateStore
from ails.types import Chunk, ChunkMeta, Completion, Usage

log = logging.getLogger("ails.server")

#: Seconds of one rate-limit window.
WINDOW = 60.0
#: Tokens used are written to the store at most this often (seconds), in one batch.
FLUSH_S = 0.05


@dataclass
class KeySettings:
    """One ``[keys.NAME]`` table of the config file: a client key and its limits
    (None: the ``--rpm``/``--tpm`` default; 0: no limit)."""

    name: str
    key: str = field(repr=False)
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True)
class KeyLimit:
    rpm: int  # 0: no limit
    tpm: int


def key_tables(tables: Any, environ: Mapping[str, str]) -> list[KeySettings]:
    """``[keys.NAME]`` tables: ``key``, ``key_env`` or ``key_file``, ``rpm``, ``tpm``."""
    if not isinstance(tables, dict):
        raise ConfigError("config [keys] must hold one table per key: [keys.NAME] key = ...")
    out = []
    for name, item in tables.items():
        where = f"config [keys.{name}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table")
        unknown = set(item) - {"key", "key_env", "key_file", "rpm", "tpm"}
        if unknown:
            raise ConfigError(f"{where}: unknown {', '.join(sorted(unknown))}")
        key, _ = read_key(item, "key", where, environ)
        if key is None:
            raise ConfigError(f"{where} needs a key (key, key_env or key_file)")
        limits = {}
        for which in ("rpm", "tpm"):
            value = item.get(which)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{where}: {which} must be an integer")
            limits[which] = value
        out.append(KeySettings(name=str(name), key=key, **limits))
    return out


def format_reset(seconds: float) -> str:
    """A duration as OpenAI writes it in ``x-ratelimit-reset-*``: ``20ms``,
    ``1s``, ``8.64s``, ``6m0s``, ``1h2m3s``."""
    ms = max(0, round(seconds * 1000))
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + secs


class TokenLedger:
    """Tokens used, written to the store in batches: the first tokens spent
    arm a timer, and :data:`FLUSH_S` later everything spent meanwhile goes out
    in one :meth:`StateStore.add`. Nothing waits for the write; a failed write
    is the store's policy's to report (the tokens are lost, not retried)."""

    def __init__(self, store: StateStore, delay: float = FLUSH_S) -> None:
        self.store = store
        self.delay = delay
        self._pending: dict[str, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task[None]] = set()  # held: tasks are weakly referenced

    def spend(self, key: str, tokens: int) -> None:
        self._pending[key] = self._pending.get(key, 0) + tokens
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self._flush)

    def _flush(self) -> None:
        self._timer = None
        batch, self._pending = self._pending, {}
        if batch:
            task = asyncio.get_running_loop().create_task(self._write(batch))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _write(self, batch: dict[str, int]) -> None:
        try:
            await self.store.add(batch, WINDOW)
        except Exception:  # a background write has nobody to raise to
            log.exception("recording %d tokens used failed", sum(batch.values()))

    async def aclose(self) -> None:
        """Write what is pending now (shutting down)."""
        if self._timer is not None:
            self._timer.cancel()
        self._flush()
        if self._writes:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._writes), 2.0)


class Admission:
    """A request admitted under a key's limits: its counts, for the headers, and
    the place to charge the tokens it used."""

    __slots__ = ("key_id", "ledger", "limit", "requests", "tokens")

    def __init__(
        self,
        ledger: TokenLedger,
        key_id: str,
        limit: KeyLimit,
        requests: Count | None,
        tokens: Count | None,
    ) -> None:
        self.ledger = ledger
        self.key_id = key_id
        self.limit = limit
        self.requests = requests
        self.tokens = tokens

    def request_counter(self) -> tuple[str, float]:
        """The store key and window of this key's requests-per-minute count."""
        return f"rpm:{self.key_id}", WINDOW

    @property
    def counts_tokens(self) -> bool:
        return self.tokens is not None

    def headers(self) -> dict[str, str]:
        out = {}
        for kind, limit, count in (
            ("requests", self.limit.rpm, self.requests),
            ("tokens", self.limit.tpm, self.tokens),
        ):
            if count is not None:
                out[f"x-ratelimit-limit-{kind}"] = str(limit)
                out[f"x-ratelimit-remaining-{kind}"] = str(count.remaining)
                out[f"x-ratelimit-reset-{kind}"] = format_reset(count.reset_s)
        return out

    def refusal(self) -> GatewayError:
        spent = []
        if self.requests is not None and self.requests.used >= self.limit.rpm:
            spent.append(("requests per minute (RPM)", self.limit.rpm, self.requests))
        if self.tokens is not None and self.tokens.used >= self.limit.tpm:
            spent.append(("tokens per minute (TPM)", self.limit.tpm, self.tokens))
        what, limit, count = spent[0]
        wait = max(1, math.ceil(count.reset_s))
        return GatewayError(
            429,
            f"Rate limit reached for this API key on {what}: Limit {limit}, Used {count.used}. "
            f"Please try again in {wait}s.",
            code="rate_limit_exceeded",
            headers={"retry-after": str(wait), **self.headers()},
        )

    def charge(self, tokens: int) -> None:
        """Charge the tokens the answer used: in this admission's headers now, in
        the store with the next batch (no waiting, and a client that hangs up
        cannot cancel it)."""
        if self.tokens is None or tokens <= 0:
            return
        used = self.tokens.used + tokens
        self.tokens = Count(used, max(0, self.limit.tpm - used), self.tokens.reset_s)
        self.ledger.spend(f"tpm:{self.key_id}", tokens)


class RateLimiter:
    def __init__(self, store: StateStore, limits: Mapping[bytes, KeyLimit]) -> None:
        self.store = store
        self.ledger = TokenLedger(store)
        self._limits = dict(limits)  # sha256(key) -> limits; only keys that have some

    @classmethod
    def build(
        cls,
        store: StateStore,
        *,
        api_keys: Iterable[str],
        tables: Iterable[KeySettings] = (),
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> RateLimiter | None:
        """None when no key has a limit (nothing to count)."""
        limits = {_digest(k): KeyLimit(rpm or 0, tpm or 0) for k in api_keys}
        for t in tables:
            limits[_digest(t.key)] = KeyLimit(
                (t.rpm if t.rpm is not None else rpm) or 0,
                (t.tpm if t.tpm is not None else tpm) or 0,
            )
        limits = {d: lim for d, lim in limits.items() if lim.rpm > 0 or lim.tpm > 0}
        return cls(store, limits) if limits else None

    async def admit(self, caller: Caller) -> Admission | None:
        """Charge one request to the caller's key (identified once, by the
        admission); None when it has no limits. Raises 429 when a limit is
        reached."""
        if caller.key_digest is None:
            return None
        limit = self._limits.get(caller.key_digest)
        if limit is None:
            return None
        key_id = caller.state_id or ""
        counters = []
        if limit.rpm:
            counters.append(Counter(f"rpm:{key_id}", limit.rpm, WINDOW))
        if limit.tpm:
            counters.append(Counter(f"tpm:{key_id}", limit.tpm, WINDOW, cost=0))
        allowed, counts = await self.store.consume_all(counters)
        found = iter(counts)
        admission = Admission(
            self.ledger,
            key_id,
            limit,
            next(found) if limit.rpm else None,
            next(found) if limit.tpm else None,
        )
        if not allowed:
            raise admission.refusal()
        return admission

    async def aclose(self) -> None:
        await self.ledger.aclose()


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


# -- tokens used --------------------------------------------------------------------


def ask_for_usage(body: dict[str, Any]) -> None:
    """Make a streamed request's backend report usage (the gateway drops the
    usage chunk again when the client did not ask for it)."""
    options = body.get("stream_options")
    body["stream_options"] = {
        **(options if isinstance(options, dict) else {}),
        "include_usage": True,
    }


def estimate_tokens(messages: Iterable[Any]) -> int:
    """About four characters a token: for backends that report no usage."""
    chars = 0
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(
                len(p["text"])
                for p in content
                if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
    return math.ceil(chars / 4)


class _Message(msgspec.Struct):
    content: Any = None


class _Choice(msgspec.Struct):
    message: _Message | None = None


class _Answer(msgspec.Struct):
    usage: Usage | None = None
    choices: list[_Choice] = msgspec.field(default_factory=list)


_decode_answer = msgspec.json.Decoder(_Answer).decode


def _total(usage: Usage) -> int:
    return max(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens)


def answer_tokens(answer: bytes, messages: list[dict[str, Any]]) -> int:
    """Tokens a ``chat.completion`` used: its ``usage``, else an estimate."""
    try:
        parsed = _decode_answer(answer)
    except msgspec.DecodeError:
        return estimate_tokens(messages)
    contents = [c.message.content for c in parsed.choices if c.message is not None]
    return _used(parsed.usage, contents, messages)


def completion_tokens(completion: Completion, messages: list[dict[str, Any]]) -> int:
    """Tokens a whole answer ails holds decoded used, by :func:`answer_tokens`'s rule."""
    return _used(completion.usage, [c.message.content for c in completion.choices], messages)


def _used(usage: Usage | None, contents: list[Any], messages: list[dict[str, Any]]) -> int:
    """The answer's ``usage``, else an estimate from the prompt and the contents."""
    if usage is not None and _total(usage) > 0:
        return _total(usage)
    return estimate_tokens(messages) + estimate_tokens([{"content": c} for c in contents])


class UsageMeter:
    """Watches a stream for the tokens it used: the usage chunk, else an
    estimate (the prompt's characters, and one token per content chunk)."""

    __slots__ = ("chunks", "messages", "reported")

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self.reported: int | None = None
        self.chunks = 0

    def observe(self, batch: Sequence[Chunk | ChunkMeta]) -> None:
        for chunk in batch:
            if chunk.usage is not None:
                self.reported = _total(chunk.usage)
            elif chunk.choices:
                self.chunks += 1

    def tokens(self) -> int:
        if self.reported:
            return self.reported
        return estimate_tokens(self.messages) + self.chunks


__all__ = [
    "FLUSH_S",
    "WINDOW",
    "Admission",
    "KeyLimit",
    "KeySettings",
    "RateLimiter",
    "TokenLedger",
    "UsageMeter",
    "answer_tokens",
    "ask_for_usage",
    "completion_tokens",
    "estimate_tokens",
    "format_reset",
    "key_tables",
]
