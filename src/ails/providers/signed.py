"""The seed's signed protocol (docs: ails-protocol.md), client side.

The body and signature follow the protocol exactly; the headers do not imitate
a browser: ``user-agent`` says ``ails/<version>``. There is no default endpoint:
the seed's original one is gone and its operator forbade scripted use.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from ails._version import __version__
from ails.errors import ConfigError
from ails.providers._http import DEFAULT_MAX_CONNECTIONS, HTTPProvider
from ails.providers.base import ChunkStream, Timeouts
from ails.signing import last_message_text, signature_fields

#: The temperature the seed used; the protocol always carries one.
DEFAULT_TEMPERATURE = 0.6


class SignedProvider(HTTPProvider):
    name = "signed"
    url = None
    models = ("gpt-3.5-turbo",)
    default_model = "gpt-3.5-turbo"
    supports_stream = True
    needs_auth = False

    def __init__(
        self,
        *,
        base_url: str | None = None,
        headers: dict[str, str] | None = None,
        max_connections: int | None = DEFAULT_MAX_CONNECTIONS,
        timeouts: Timeouts | None = None,
    ) -> None:
        if not base_url:
            raise ConfigError(
                "the signed provider needs base_url (a server of the ails signed protocol, "
                "e.g. http://127.0.0.1:8000/v1 for `ails serve --allow-signed`)"
            )
        super().__init__(
            base_url=base_url, timeouts=timeouts, headers=headers, max_connections=max_connections
        )

    def request_headers(self) -> dict[str, str]:
        return {
            **self.extra_headers,
            "authorization": "Bearer free",
            "client-id": str(uuid.uuid4()),
            "client-v": __version__,
            "user-agent": f"ails/{__version__}",
            "accept": "*/*",
            "content-type": "application/json",
        }

    async def connect(
        self,
        model: str,
        messages: list,  # type: ignore[type-arg]
        temperature: float = DEFAULT_TEMPERATURE,
        stream: bool = True,
        **extra: Any,
    ) -> ChunkStream:
        # Signed afresh on every call, so a retry never reuses a timestamp.
        sig = signature_fields(last_message_text({"messages": messages}), now_ms=_now_ms())
        body: dict[str, Any] = {
            "model": model,
            "temperature": DEFAULT_TEMPERATURE if temperature is None else temperature,
            "stream": True,
            "messages": messages,
            **sig,
        }
        for key, value in extra.items():
            if value is not None and key not in body:
                body[key] = value
        return await self.open_sse("/chat/completions", body)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
