"""ails: streaming chat completions from many backends, one interface.

    import ails
    for token in ails.create_completion("local/default", [{"role": "user", "content": "Hi"}]):
        print(token, end="")

Importing ails does no network, disk or model work: the clients (and aiohttp
behind them) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ails._version import __version__
from ails.errors import (
    AilsError,
    AuthFailed,
    BadRequest,
    ConfigError,
    NotFound,
    ProtocolError,
    ProviderError,
    RateLimited,
    SignatureError,
    Timeout,
    UpstreamUnavailable,
)
from ails.types import ChatRequest, Chunk, Completion, Message, Usage

if TYPE_CHECKING:
    from ails._sync import Client, Stream, create_completion
    from ails.client import AsyncClient, AsyncStream
    from ails.providers.base import Provider, QueueWait, Timeouts

_LAZY = {
    "Client": "ails._sync",
    "Stream": "ails._sync",
    "create_completion": "ails._sync",
    "AsyncClient": "ails.client",
    "AsyncStream": "ails.client",
    "Provider": "ails.providers.base",
    "QueueWait": "ails.providers.base",
    "Timeouts": "ails.providers.base",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ails' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AilsError",
    "AsyncClient",
    "AsyncStream",
    "AuthFailed",
    "BadRequest",
    "ChatRequest",
    "Chunk",
    "Client",
    "Completion",
    "ConfigError",
    "Message",
    "NotFound",
    "ProtocolError",
    "Provider",
    "ProviderError",
    "QueueWait",
    "RateLimited",
    "SignatureError",
    "Stream",
    "Timeout",
    "Timeouts",
    "UpstreamUnavailable",
    "Usage",
    "__version__",
    "create_completion",
]
