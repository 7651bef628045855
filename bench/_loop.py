"""The event loop every bench server and the load generator run on: uvloop
when asked for and installed (what ``ails serve`` uses by default), so that
the floor and the gateway are measured on the same loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def run_on_loop(main: Coroutine[Any, Any, Any], loop: str) -> Any:
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)
