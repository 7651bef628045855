"""Who may use the gateway: API keys, the signed protocol, the replay cache, quotas.

* API keys: the gateway keeps only their SHA-256 digests and compares the
  digest of the presented key with *every* one of them in constant time, so
  neither the match nor its position leaks through timing. An
  ``Authorization`` header found valid is remembered as it was sent, so the
  next request with it costs one dict lookup, not a SHA-256
  (:attr:`Authenticator._known`, which says why that leaks nothing either).
* A body that carries any of ``d``/``t``/``s`` is verified, whatever else is
  configured, and refused if it fails (ails-protocol.md): format and date (400),
  freshness and signature (401), then the replay cache (401). A client with a
  valid key is accepted after that; an anonymous one only with
  ``allow_signed``, and then within its per-address quota (429).
* The client address is the socket's peer. ``X-Forwarded-For`` is believed
  only from a configured trusted proxy, and then only its last hop (the one
  that proxy appended itself; earlier hops are whatever the client wrote).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Any

from aiohttp import web

from ails.errors import SignatureError
from ails.server.errors import GatewayError, signature_refusal
from ails.server.limits import Quota
from ails.server.state import StateStore
from ails.signing import DEFAULT_WINDOW_MS, verify

SIGNED_FIELDS = ("d", "t", "s")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The most ``Authorization`` values an :class:`Authenticator` remembers as
#: valid (``_known``): a few per key, as clients send them, with room to spare.
KNOWN_HEADERS = 1024


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def parse_networks(entries: Iterable[str]) -> list[_Network]:
    """Trusted proxies as addresses or CIDR networks."""
    return [ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip()]


def in_networks(address: str, networks: Iterable[_Network]) -> bool:
    """Whether ``address`` (an IP literal; anything else is not) is in one of ``networks``."""
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(addr in net for net in networks)


@dataclass(frozen=True)
class Caller:
    """Who is calling, established once per request and carried through the
    limits, quotas and logs: a configured key (by its digest, never the key),
    a signed client, or anyone (no key configured)."""

    key_digest: bytes | None = None
    signed: bool = False
    #: The key's ``[keys.NAME]`` name, when it has one.
    name: str | None = None
    # Made once (the access log and the metrics ask on every request).
    _key_id: str | None = _field(default=None, init=False, repr=False, compare=False)
    _label: str = _field(default="", init=False, repr=False, compare=False)

    @property
    def key_id(self) -> str | None:
        """The key as logs and metrics name it, never the key: its
        ``[keys.NAME]`` name, else the first 8 hex digits of its SHA-256."""
        return self._key_id

    @property
    def state_id(self) -> str | None:
        """The key in the shared state (rate-limit counters, stored responses):
        128 bits of its digest, so two keys never share a counter, and a key
        renamed in the config keeps its counts."""
        return self.key_digest.hex()[:32] if self.key_digest is not None else None

    def __post_init__(self) -> None:
        if self.key_digest is not None:
            key_id = self.name or self.key_digest.hex()[:8]
            object.__setattr__(self, "_key_id", key_id)
            object.__setattr__(self, "_label", f"key:{key_id}")
        else:
            object.__setattr__(self, "_label", "signed" if self.signed else "open")

    def label(self) -> str:
        """``key:ID``, ``signed`` or ``open``: who called, for the access log."""
        return self._label


ANYONE = Caller()


class Authenticator:
    def __init__(
        self,
        *,
        api_keys: Iterable[str] = (),
        allow_signed: bool = False,
        window_ms: int = DEFAULT_WINDOW_MS,
        store: StateStore,
        quota: Quota | None = None,
        trusted_proxies: Iterable[str] = (),
        clock_ms: Callable[[], int] | None = None,
        key_names: Mapping[str, str] | None = None,
    ) -> None:
        self._digests = [_digest(k) for k in dict.fromkeys(api_keys) if k]
        #: digest -> the key's ``[keys.NAME]`` name (the id logs and metrics show).
        self._names = {_digest(k): name for k, name in (key_names or {}).items() if k}
        #: Each key's caller, made once (a caller is immutable): not one per request.
        self._callers = {d: Caller(key_digest=d, name=self._names.get(d)) for d in self._digests}
        #: ``Authorization`` header values, exactly as sent, that carried a
        #: configured key -> its caller: a client sends the same header on
        #: every request, and this spares it the SHA-256 (about 5.7k
        #: instructions) and the comparisons. Safe, and why:
        #:
        #: * Filled only on a match, so an invalid header is never kept: a
        #:   stream of wrong keys neither grows it nor is ever answered from it,
        #:   and still meets the constant-time comparison below.
        #: * A lookup hashes the presented string with SipHash under the
        #:   process's random seed (time by length only), and compares bytes
        #:   with a stored header only when the two 64-bit hashes are equal:
        #:   a wrong key is never compared with a valid one byte by byte, short
        #:   of a collision of a keyed hash nobody outside can compute.
        #: * A hit is faster than a miss; that tells a client only that the
        #:   header it sent holds a valid key, which the answer (200, not 401)
        #:   tells it anyway.
        #: * Bounded: one key can be spelt many ways (``bearer``, spaces), so
        #:   it is emptied when :data:`KNOWN_HEADERS` are kept (a client that
        #:   varies its header only loses the shortcut). The keys are fixed
        #:   for an Authenticator's life (a new key set is a new one), so
        #:   nothing kept can outlive its key. The values hold keys in the
        #:   clear, as the incoming headers and the log redactor already do.
        self._known: dict[str, Caller] = {}
        self.allow_signed = allow_signed
        self.window_ms = window_ms
        self.store = store
        self.quota = quota
        self.trusted = parse_networks(trusted_proxies)
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)

    @property
    def open(self) -> bool:
        """No key configured: anyone may call (meant for loopback use)."""
        return not self._digests

    def matching_key(self, authorization: str | None) -> bytes | None:
        """The digest of the configured key the header carries, if any."""
        token = bearer_token(authorization)
        if token is None or not self._digests:
            return None
        presented = _digest(token)
        ok = False
        for expected in self._digests:  # no early exit: the time is the same for any key
            ok |= hmac.compare_digest(presented, expected)
        return presented if ok else None

    def _keyed(self, digest: bytes) -> Caller:
        caller = self._callers.get(digest)
        return caller if caller is not None else Caller(digest, name=self._names.get(digest))

    def _check(self, authorization: str | None) -> Caller | None:
        """The caller of a header that carries a valid key (kept in
        :attr:`_known`, where the next request finds it); None: no valid key."""
        if authorization is not None:
            caller = self._known.get(authorization)  # why this is safe: _known
            if caller is not None:
                return caller
        digest = self.matching_key(authorization)
        if digest is None or authorization is None:
            return None
        caller = self._keyed(digest)
        known = self._known
        if len(known) >= KNOWN_HEADERS:
            known.clear()
        known[authorization] = caller
        return caller

    def key_valid(self, authorization: str | None) -> bool:
        return self.matching_key(authorization) is not None

    def identify_head(self, request: web.Request) -> Caller | None:
        """Who calls, from the head alone, before the body is read: a valid
        key's caller (or anyone, with no keys configured); a request its key
        alone refuses is refused here (401). ``None``: keyless under
        ``--allow-signed``, so only a small, signed body can be served."""
        if not self._digests:
            return ANYONE
        authorization = request.headers.get("Authorization")
        caller = self._check(authorization)
        if caller is not None:
            return caller
        if not self.allow_signed:
            self.identify(request)  # raises: only a valid key can be served
        return None

    def require_key(self, request: web.Request) -> bool:
        """Refuse a request without a valid key when keys are configured; say
        whether the caller presented a valid one."""
        return self.identify(request).key_digest is not None

    def identify(self, request: web.Request) -> Caller:
        """The caller of a request that is not signed: its key, checked once;
        a request without a valid key is refused when keys are configured."""
        if not self._digests:
            return ANYONE
        authorization = request.headers.get("Authorization")
        caller = self._check(authorization)
        if caller is not None:
            return caller
        if bearer_token(authorization) is None:
            message = "missing API key: send it as 'Authorization: Bearer KEY'"
        else:
            message = "Incorrect API key provided."
        raise GatewayError(401, message, code="invalid_api_key")

    def client_address(self, request: web.Request) -> str:
        peer = request.remote or ""
        if self.trusted and peer:
            forwarded = request.headers.get("X-Forwarded-For")
            if forwarded and in_networks(peer, self.trusted):
                last = forwarded.rsplit(",", 1)[-1].strip()
                try:
                    return str(ipaddress.ip_address(last))
                except ValueError:
                    pass  # a proxy that writes garbage is not believed
        return peer

    def verify_signed(self, request: web.Request, body: dict[str, Any]) -> SignedCaller:
        """Check a body that carries signed fields, touching no state (400/401),
        and take the fields out of ``body``. (An unsigned one needs only
        :meth:`require_key`.) :meth:`admit_signed` then charges it, once the
        request is known to be servable."""
        # Verified first, whoever sends it: a valid key does not excuse a bad signature.
        try:
            verify(body, now_ms=self._clock_ms(), window_ms=self.window_ms)
        except SignatureError as exc:
            raise signature_refusal(exc, "signed request refused: ") from None
        digest = self.matching_key(request.headers.get("Authorization"))
        keyed = digest is not None
        if not keyed and not self.allow_signed:
            raise GatewayError(
                401,
                "this gateway does not accept anonymous signed requests "
                "(the operator can allow them with --allow-signed; or send an API key)",
                code="signed_not_allowed",
            )
        caller = SignedCaller(
            replay_key=f"replay:{body['t']}:{body['s']}",
            quota_key=None if keyed else f"quota:{self.client_address(request)}",
            caller=Caller(
                key_digest=digest,
                signed=True,
                name=self._names.get(digest) if digest is not None else None,
            ),
        )
        for field in SIGNED_FIELDS:
            body.pop(field, None)
        return caller

    async def admit_signed(self, caller: SignedCaller) -> Refund | None:
        """Charge an anonymous caller's quota (429 when spent), then record the
        signature (401 if it was used before, and the charge is given back).
        A request refused by its quota leaves no replay entry. Returns what
        gives the charge back if the backend fails before any output."""
        refund: Refund | None = None
        if caller.quota_key is not None and self.quota is not None:
            quota, key = self.quota, caller.quota_key
            allowed, _, reset_s = await self.store.consume(key, quota.limit, quota.window)
            if not allowed:
                wait = max(1, math.ceil(reset_s))
                raise GatewayError(
                    429,
                    f"quota of {quota} anonymous signed requests per address is spent; "
                    f"it resets in {wait} s",
                    code="quota_exceeded",
                    headers={"retry-after": str(wait)},
                )
            refund = Refund(self.store, key, quota.window)
        ttl = 2 * self.window_ms / 1000
        try:
            replayed = await self.store.seen_before(caller.replay_key, ttl)
        except BaseException:
            if refund is not None:
                await refund()
            raise
        if replayed:
            if refund is not None:
                await refund()
            raise signature_refusal(
                SignatureError(
                    "this signature was already used (a replayed body); sign every request afresh",
                    code="signature_replayed",
                ),
                "signed request refused: ",
            )
        return refund


@dataclass(frozen=True)
class SignedCaller:
    """A verified signed request: what to record and whom to charge (None: a keyed caller)."""

    replay_key: str
    quota_key: str | None
    #: Who it is, for the limits and the log.
    caller: Caller = Caller(signed=True)


class Refund:
    """Gives the units a request was charged back, once: the backend failed
    before any output (an anonymous signed quota's unit, a key's request-per-
    minute unit)."""

    def __init__(self, store: StateStore, key: str, window: float) -> None:
        self.store = store
        self.units = [(key, window)]
        self.done = False

    def also(self, key: str, window: float) -> Refund:
        self.units.append((key, window))
        return self

    async def __call__(self) -> None:
        if self.done:
            return
        self.done = True
        # Into the current window: at a window's edge that is one unit more for
        # the new window, never a lost one. (A store that is down keeps the unit.)
        for key, window in self.units:
            await self.store.add({key: -1}, window)


__all__ = [
    "ANYONE",
    "SIGNED_FIELDS",
    "Authenticator",
    "Caller",
    "Refund",
    "SignedCaller",
    "bearer_token",
    "in_networks",
    "parse_networks",
]
