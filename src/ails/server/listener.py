"""Where the gateway listens: aiohttp's TCP site with every connection behind
the :class:`~ails.server.connections.ConnectionGuard`, and an open-file limit
that lets ``--max-connections`` be reached before the ``ulimit``."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ails.server.connections import ConnectionGuard


async def listen(
    runner: web.AppRunner,
    guard: ConnectionGuard,
    host: str,
    port: int,
    *,
    backlog: int = 1024,
) -> GuardedSite:
    """Start serving ``runner`` on ``host:port`` with every connection guarded."""
    site = GuardedSite(runner, host, port, guard=guard, backlog=backlog)
    await site.start()
    return site


class GuardedSite(web.TCPSite):
    """aiohttp's TCP site, with :class:`ConnectionGuard` in front of its protocol."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        *,
        guard: ConnectionGuard,
        backlog: int = 1024,
    ) -> None:
        super().__init__(runner, host, port, backlog=backlog)
        self.guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard.wrap(server), self._host, self._port, backlog=self._backlog
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


def raise_fd_limit(wanted: int) -> tuple[int, int]:
    """Raise this process's soft limit of open files towards ``wanted`` (at most
    the hard limit), so that ``--max-connections`` is reached before the
    ``ulimit``; return the limits now."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return (-1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft, hard


__all__ = ["GuardedSite", "listen", "raise_fd_limit"]
