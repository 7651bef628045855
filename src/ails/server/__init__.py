"""``ails serve``: an OpenAI-compatible gateway over the library's providers.

:func:`~ails.server.build.create_gateway` turns a
:class:`~ails.server.options.GatewayConfig` into the handlers and their
router; :func:`~ails.server.app.build_app` into an aiohttp application.
docs/gateway.md describes the behaviour.

Importing this package imports nothing heavy (``ails --help`` reads the
options' declaration from it); the names below load aiohttp on first use.
Nothing loads a model or touches the network before :meth:`Gateway.start`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "AccessLogger": "ails.server.app",
    "Gateway": "ails.server.app",
    "build_app": "ails.server.app",
    "GatewayConfig": "ails.server.options",
    "build_config": "ails.server.config",
    "create_gateway": "ails.server.build",
    "shared_store": "ails.server.build",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ails.server' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = sorted(_LAZY)
