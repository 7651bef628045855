"""Where the gateway listens: a TCP site (on aiohttp's public BaseSite) with
every connection behind the :class:`~ails.server.connections.ConnectionGuard`,
and an open-file limit that lets ``--max-connections`` be reached before the
``ulimit``."""

from __future__ import annotations

import asyncio

from aiohttp import web
from yarl import URL

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


class GuardedSite(web.BaseSite):
    """A TCP site like aiohttp's, with :class:`ConnectionGuard` in front of its
    protocol.

    Built on public parts only: :class:`~aiohttp.web.BaseSite` (``start``
    registers the site with its runner, ``stop`` unregisters it; the runner's
    ``cleanup`` stops it), ``runner.server`` (the protocol factory) and
    asyncio's ``create_server``. The listener is this class's own, so the site
    does not depend on :class:`~aiohttp.web.TCPSite`'s private fields; the
    bound address is :attr:`address` (``runner.addresses`` reads a private
    field of the site and does not list this one).
    """

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        *,
        guard: ConnectionGuard,
        backlog: int = 1024,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self.runner = runner
        self.host = host
        self.port = port
        self.backlog = backlog
        self.guard = guard
        self.listener: asyncio.Server | None = None

    @property
    def name(self) -> str:
        return str(URL.build(scheme="http", host=self.host or "0.0.0.0", port=self.port))

    @property
    def address(self) -> tuple[str, int]:
        """The host and port it listens on (the port chosen, for port 0)."""
        assert self.listener is not None and self.listener.sockets, "not started"
        host, port = self.listener.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        await super().start()  # registers the site with its runner
        server = self.runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self.listener = await loop.create_server(
            self.guard.wrap(server), self.host, self.port, backlog=self.backlog
        )
        self.port = self.address[1]

    async def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
        await super().stop()


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
