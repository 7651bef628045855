"""An HTTP API reached with one key, as the vendors' SDKs configure it.

OpenAI's and Anthropic's providers (and any like them) take ``base_url`` and
``api_key`` from their settings, or else from the environment variables the
class declares (``setting_env["base_url"]``, ``key_env``), or else use the
class's ``url``: one rule, so ``ails -m openai/MODEL`` and ``ails -m
anthropic/MODEL`` work with no config file exactly as the SDKs do.
"""

from __future__ import annotations

import os

from ails.providers._http import DEFAULT_MAX_CONNECTIONS, HTTPProvider
from ails.providers.base import Timeouts


class KeyedHTTPProvider(HTTPProvider):
    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        max_connections: int | None = DEFAULT_MAX_CONNECTIONS,
        timeouts: Timeouts | None = None,
    ) -> None:
        env = self.setting_env.get("base_url")
        base_url = base_url or (os.environ.get(env) if env else None) or self.url
        if not base_url:
            raise TypeError(f"{type(self).__name__} needs a base_url (it has no default url)")
        super().__init__(
            base_url=base_url, timeouts=timeouts, headers=headers, max_connections=max_connections
        )
        if api_key is None:
            api_key = next((os.environ[v] for v in self.key_env if os.environ.get(v)), None)
        self.api_key = api_key


__all__ = ["KeyedHTTPProvider"]
