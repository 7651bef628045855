"""What a key must look like, checked once at start for every key the gateway
reads, wherever it came from (flag, environment, key file, config file).

An empty key is the dangerous case: ``--api-key "$KEY"`` with ``KEY`` unset
gives ``""``, which the bind guard would count as "a key is set" while the
authenticator cannot match anything against it. So a key that cannot work
stops the start, naming where it came from, instead of being dropped.
"""

from __future__ import annotations

from ails.errors import ConfigError

#: Client keys on an address beyond loopback: long enough not to be guessed.
MIN_PUBLIC_KEY_LENGTH = 16


def check_key(key: str, source: str, *, min_length: int = 1) -> str:
    """``key`` if it is non-empty visible ASCII without whitespace and at least
    ``min_length`` long; else a :class:`ConfigError` that names ``source``.

    Visible ASCII because a key travels in an HTTP header (``Authorization``),
    where anything else is mangled or refused on the way.
    """
    if not key:
        raise ConfigError(f"the key from {source} is empty (an unset variable?)")
    if any(c.isspace() for c in key):
        raise ConfigError(f"the key from {source} contains whitespace")
    if not all("!" <= c <= "~" for c in key):
        raise ConfigError(
            f"the key from {source} has a character that is not printable ASCII; "
            "keys travel in HTTP headers"
        )
    if len(key) < min_length:
        raise ConfigError(
            f"the key from {source} is {len(key)} characters; a client key on an address "
            f"beyond this machine needs at least {min_length}"
        )
    return key


__all__ = ["MIN_PUBLIC_KEY_LENGTH", "check_key"]
