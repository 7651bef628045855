"""A gateway backend's connection pool and timeouts: no cap unless configured;
a configured cap that is reached makes a request wait at most the connect
timeout, and every such wait is counted (``pool_waits``, for the metrics);
a backend's own ``timeout`` sets its total limit and keeps the gateway's
connect and idle limits. Against the tests' real upstream on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from ails.errors import Timeout
from ails.providers.base import Timeouts
from ails.providers.openai import OpenAIProvider
from ails.server.backends import build_backends
from ails.server.config import GatewayConfig
from upstream import Upstream

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def up() -> Iterator[Upstream]:
    with Upstream(models=["test-model"]) as u:
        yield u


def config_with(providers: dict[str, dict[str, object]]) -> GatewayConfig:
    cfg = GatewayConfig()
    cfg.connect_timeout, cfg.idle_timeout, cfg.timeout = 3.0, 4.0, 600.0
    cfg.providers = providers
    cfg.backends = list(providers)
    return cfg


def test_a_backend_timeout_sets_the_total_and_keeps_connect_and_idle(up: Upstream) -> None:
    cfg = config_with(
        {
            "capped": {
                "type": "openai",
                "base_url": up.base_url,
                "timeout": 7,
                "max_connections": 2,
            },
            "plain": {"type": "openai", "base_url": up.base_url},
        }
    )
    backends, _ = build_backends(cfg, {})
    capped, plain = (b.provider for b in backends)
    assert capped.timeouts == Timeouts(connect=3.0, idle=4.0, total=7.0)
    assert plain.timeouts == Timeouts(connect=3.0, idle=4.0, total=600.0)
    assert isinstance(capped, OpenAIProvider) and isinstance(plain, OpenAIProvider)
    # The gateway's default is no cap; a configured one is kept.
    assert (capped.max_connections, plain.max_connections) == (2, None)
    assert (capped.pool_waits, plain.pool_waits) == (0, 0)


async def test_a_reached_cap_waits_and_the_wait_is_counted(up: Upstream) -> None:
    provider = OpenAIProvider(base_url=up.base_url, api_key="k", max_connections=1)
    try:
        held = await provider.connect("slow:3:200", HELLO)  # the only connection
        second = asyncio.create_task(provider.reply("test-model", HELLO))
        await asyncio.sleep(0.1)
        assert provider.pool_waits == 1 and not second.done()
        async for _ in held:  # the first answer ends: its connection is free again
            pass
        await held.aclose()
        reply = await asyncio.wait_for(second, 10)
        assert reply.completion.choices[0].message.content == "hello "
        assert provider.pool_waits == 1
    finally:
        await provider.aclose()


async def test_a_wait_for_a_connection_is_bounded_by_the_connect_timeout(up: Upstream) -> None:
    provider = OpenAIProvider(
        base_url=up.base_url,
        api_key="k",
        max_connections=1,
        timeouts=Timeouts(connect=0.3, idle=30.0, total=60.0),
    )
    try:
        held = await provider.connect("endless", HELLO)  # never frees its connection
        try:
            with pytest.raises(Timeout) as info:
                # Bounded here too, so that a wait without a limit fails, not hangs.
                await asyncio.wait_for(provider.reply("test-model", HELLO), 10)
            assert info.value.kind == "connect"
            assert provider.pool_waits == 1
        finally:
            await held.aclose()
    finally:
        await provider.aclose()
