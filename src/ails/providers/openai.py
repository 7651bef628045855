"""Any OpenAI-compatible endpoint: OpenAI, vLLM, llama.cpp's server, Ollama, LiteLLM,
another ``ails serve``.

Like the official SDK, it reads ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` when
they are not given, so ``ails -m openai/MODEL`` works with no config file.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import Any, ClassVar

from ails.errors import AuthFailed, ProtocolError
from ails.providers._keyed import KeyedHTTPProvider
from ails.providers.base import ChunkStream, Reply
from ails.types import Completion, text_chunk, text_completion

OFFICIAL_BASE_URL = "https://api.openai.com/v1"


class OpenAIProvider(KeyedHTTPProvider):
    name = "openai"
    url = OFFICIAL_BASE_URL
    models = ()
    default_model = None
    supports_stream = True
    needs_auth = True
    key_env = ("OPENAI_API_KEY",)
    setting_env: ClassVar[Mapping[str, str]] = {"base_url": "OPENAI_BASE_URL"}

    def readiness(self) -> str | None:
        if not self.api_key and self.base_url == OFFICIAL_BASE_URL:
            return f"needs a key: set {' or '.join(self.key_env)}, or api_key in its config"
        return None

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIProvider(base_url={self.base_url!r})"

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.extra_headers)
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        elif self.base_url == OFFICIAL_BASE_URL:
            # Fail before the network: the official endpoint always wants a key.
            raise AuthFailed(
                f"no API key for the {self.name} provider: set OPENAI_API_KEY, "
                "or give base_url for a server that needs none",
                provider=self.name,
            )
        return headers

    # connect and reply return the coroutine that sends the request, for
    # the caller to await, not a coroutine of their own around it: one frame
    # less on every request, and on every resume while the upstream answers.

    def connect(
        self,
        model: str,
        messages: list[Any],
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        n: int | None = None,
        user: str | None = None,
        tools: list[Any] | None = None,
        tool_choice: Any = None,
        response_format: Any = None,
        stream_options: dict[str, Any] | None = None,
        stream: bool = True,
        **extra: Any,
    ) -> Coroutine[Any, Any, ChunkStream]:
        """Send the request; the open stream of the answer (a coroutine: await it)."""
        # The named fields that were given, in this order, then unknown ones
        # untouched. Each by name, not a loop over locals(): 5k instructions
        # less per request (tests/test_upstream.py checks every field).
        body: dict[str, Any] = {}
        if model is not None:
            body["model"] = model
        if messages is not None:
            body["messages"] = messages
        if temperature is not None:
            body["temperature"] = temperature
        if top_p is not None:
            body["top_p"] = top_p
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if stop is not None:
            body["stop"] = stop
        if seed is not None:
            body["seed"] = seed
        if n is not None:
            body["n"] = n
        if user is not None:
            body["user"] = user
        if tools is not None:
            body["tools"] = tools
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
        if response_format is not None:
            body["response_format"] = response_format
        if stream_options is not None:
            body["stream_options"] = stream_options
        body.update(extra)
        body["stream"] = True
        return self.open_sse("/chat/completions", body)

    def reply(self, model: str, messages: list[Any], **params: Any) -> Coroutine[Any, Any, Reply]:
        """A whole answer with its bytes as received (a coroutine: await it)."""
        body: dict[str, Any] = {"model": model, "messages": messages}
        for key, value in params.items():
            # stream_options: only valid with stream: true
            if value is not None and key != "stream_options":
                body[key] = value
        body["stream"] = False
        return self.post_for_json("/chat/completions", body, self.completion_reply)

    async def complete(self, model: str, messages: list[Any], **params: Any) -> Completion:
        return (await self.reply(model, messages, **params)).completion

    async def embed(self, model: str, body: dict[str, Any]) -> bytes:
        raw, probe = await self.post_for_json("/embeddings", {**body, "model": model})
        if not probe.has_data:
            raise ProtocolError(
                "answer is not an embeddings list (no 'data')",
                provider=self.name,
                code="invalid_embeddings",
            )
        return raw

    async def stream_text(self, model: str, body: dict[str, Any]) -> ChunkStream:
        body = {**body, "model": model, "stream": True}
        return await self.open_sse("/completions", body, decode=text_chunk)

    async def complete_text(self, model: str, body: dict[str, Any]) -> Reply:
        body = {**body, "model": model, "stream": False}
        body.pop("stream_options", None)  # only valid with stream: true
        raw, probe = await self.post_for_json("/completions", body)
        if not probe.has_choices:
            raise ProtocolError(
                "answer is not a text_completion (no 'choices')",
                provider=self.name,
                code="invalid_completion",
            )
        return Reply(raw=raw, decode=text_completion)

    async def list_models(self) -> list[str]:
        return [str(m["id"]) for m in await self.list_model_objects()]

    async def list_model_objects(self) -> list[dict[str, Any]]:
        """The endpoint's own ``/models`` entries (those with an ``id``)."""
        data = await self.get_json("/models")
        items = data.get("data", []) if isinstance(data, dict) else []
        return [m for m in items if isinstance(m, dict) and "id" in m]


#: connect's named fields, in the order they go into the body (a test keeps
#: this and connect's signature and its body the same).
_NAMED = (
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "n",
    "user",
    "tools",
    "tool_choice",
    "response_format",
    "stream_options",
)
