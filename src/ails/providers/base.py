"""What a provider is: the seed's metadata plus one way to open a stream.

A provider class carries the seed's metadata (``url``, ``models``,
``default_model``, ``supports_stream``, ``needs_auth``) and implements
``connect``, whose *signature* is the list of request parameters it honours.
``params`` is introspected from that signature, as the seed did from its
``_create_completion``, and the router uses the same signature to refuse a
parameter a provider would silently drop.

``connect`` does everything up to the first byte of the answer (send, check the
status) and returns a :class:`ChunkStream`. The split matters: the router may
retry or fall back while ``connect`` fails, and never once the body started.

The bytes as received are part of the contract, as httpx's ``Response`` keeps
them: a :class:`Batch` carries each chunk's JSON text beside the decoded chunk
(``None`` for a chunk ails made itself), and a :class:`Reply` carries a whole
answer's JSON bytes. A gateway forwards those, so fields ails does not model
survive, without asking which class produced them. Errors sent in-band (a
``200 {"error": ...}``) are raised by the provider, once, for every caller.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, get_type_hints

from ails.errors import NotFound
from ails.types import Chunk, ChunkMeta, Completion, Usage, completion_from_chunks

#: Decodes a whole answer's bytes on first use of :attr:`Reply.completion`.
CompletionDecoder = Callable[[bytes], Completion]


@dataclass(frozen=True)
class Timeouts:
    """Seconds; ``None`` means no limit.

    ``idle`` is the longest wait for the next piece of content; keep-alive
    comments do not count as content, so a server that only pings still times out.
    """

    connect: float | None = 10.0
    idle: float | None = 120.0
    total: float | None = 600.0


@dataclass(frozen=True)
class TokenCount:
    """How many tokens a request's prompt is, by the backend's own tokenizer
    (``exact``), or by a rule of thumb (not exact)."""

    tokens: int
    exact: bool


class Batch(list[Chunk]):
    """The chunks of one read, and each one's JSON text as it was received.

    ``raw[i]`` is chunk ``i``'s text from the wire, or ``None`` when ails made
    the chunk (the embedded model). A stream may also yield a plain list, which
    means that no chunk in it has a text of its own.

    ``frames``, when not ``None``, is the whole batch as the SSE bytes read,
    ``data: TEXT\\n\\n`` for each chunk in order and nothing else (an
    OpenAI-style upstream's usual read): a gateway can forward them in one
    piece, and ``raw`` is cut from them only when asked for.

    ``meta`` is what a gateway looks at in each chunk (finish reasons,
    usage, an in-band error): the chunks themselves here; a stream may yield
    a batch that decodes only that much when it reads, and its chunks on
    first use (an OpenAI-style upstream's plain reads), so that a gateway
    that forwards the frames never builds them.
    """

    __slots__ = ("_raw", "frames")

    def __init__(
        self,
        chunks: Sequence[Chunk] = (),
        raw: Sequence[str | None] | None = None,
        *,
        frames: bytes | None = None,
    ):
        super().__init__(chunks)
        self._raw = raw
        self.frames = frames

    @property
    def meta(self) -> Sequence[Chunk | ChunkMeta]:
        return self

    @property
    def raw(self) -> Sequence[str | None]:
        raw = self._raw
        if raw is None:
            frames = self.frames
            raw = frames[6:-2].decode().split("\n\ndata: ") if frames else (None,) * len(self)
            self._raw = raw
        return raw


class QueueWait(Batch):
    """A batch with no chunks: the answer waits for a busy model.

    A stream may yield it before its first chunk (the embedded model when its
    slots are full; an HTTP backend that sends ``: queued ahead=N`` comments,
    as ``ails serve`` does). Code that reads the chunks of each batch sees an
    empty batch and carries on; code that wants to show the wait checks
    ``isinstance(batch, QueueWait)``. ``ahead``: requests before this one
    (being answered or waiting); ``waited``: seconds waited so far, or ``None``
    when unknown (a comment says only the place); ``started``: the wait is
    over, the model took the request (sent once, after a wait was announced).
    """

    __slots__ = ("ahead", "started", "waited")

    def __init__(self, ahead: int, waited: float | None = None, *, started: bool = False):
        super().__init__(())
        self.ahead = ahead
        self.waited = waited
        self.started = started

    def __repr__(self) -> str:
        return f"QueueWait(ahead={self.ahead}, waited={self.waited}, started={self.started})"


def chunk_meta(batch: list[Chunk]) -> Sequence[Chunk | ChunkMeta]:
    """What a gateway looks at in each chunk of a batch (see :attr:`Batch.meta`)."""
    return batch.meta if isinstance(batch, Batch) else batch


def raw_texts(batch: list[Chunk]) -> Sequence[str | None]:
    """Each chunk's text as received (``None`` where ails made the chunk)."""
    return batch.raw if isinstance(batch, Batch) else (None,) * len(batch)


class Reply:
    """A whole answer: its JSON bytes as received (``None`` when ails made it)
    and the :class:`Completion`, decoded from them on first use. ``queue_ms``:
    how long the request waited for a busy model, where the backend knows
    (the embedded model), else ``None``. ``usage``: the answer's usage, where
    the provider read it on its way (an HTTP backend's probe), so that a
    gateway need not decode the bytes again for it; ``None``: not read (the
    completion has it)."""

    __slots__ = ("_completion", "_decode", "queue_ms", "raw", "usage")

    def __init__(
        self,
        completion: Completion | None = None,
        *,
        raw: bytes | None = None,
        decode: CompletionDecoder | None = None,
        queue_ms: int | None = None,
        usage: Usage | None = None,
    ) -> None:
        if completion is None and (raw is None or decode is None):
            raise ValueError("a Reply needs a completion, or its bytes and a decoder")
        self._completion = completion
        self._decode = decode
        self.raw = raw
        self.queue_ms = queue_ms
        self.usage = usage

    @property
    def completion(self) -> Completion:
        if self._completion is None:
            assert self.raw is not None and self._decode is not None
            self._completion = self._decode(self.raw)
        return self._completion


class ChunkStream(ABC):
    """An open answer: an async iterator of *batches* of chunks.

    A batch is whatever one read from the backend produced (one network read,
    one token of the local model). Handing chunks over in batches is what lets
    the sync bridge cross threads once per read instead of once per token. A
    stream of a remote backend yields :class:`Batch` lists, which keep each
    chunk's text as received.
    """

    #: True once the stream is closed (:meth:`aclose` ran, or it closed
    #: itself at its end), so that a caller may skip :meth:`aclose`; a stream
    #: that does not keep track says False, and is closed again (harmless).
    closed: bool = False

    def __aiter__(self) -> ChunkStream:
        return self

    @abstractmethod
    async def __anext__(self) -> list[Chunk]: ...

    @abstractmethod
    async def aclose(self) -> None:
        """Release the connection or stop generation; safe to call twice."""

    @property
    def ended(self) -> bool:
        """True when the batch just returned is known to be the last one (the
        stream's end marker came with it), so a caller can send its own end
        in the same write. False when that is not known yet."""
        return False


class Provider(ABC):
    """Base of every provider. Subclasses set the metadata and ``connect``."""

    #: The part before the slash in ``"provider/model"``: the type's registry
    #: name on the class; an instance configured under a name of its own
    #: (``[providers.groq] type = "openai"``) carries that name, in its errors too.
    name: str
    #: Home page or default endpoint, for display; ``None`` when it is configuration.
    url: ClassVar[str | None] = None
    #: Models known in advance (a remote endpoint may serve others).
    models: ClassVar[tuple[str, ...]] = ()
    default_model: ClassVar[str | None] = None
    supports_stream: ClassVar[bool] = True
    needs_auth: ClassVar[bool] = False
    #: Environment variables that hold this type's API key (the official SDKs'
    #: names), the first set one winning. Read only by the instance named as
    #: the type: a key meant for OpenAI never goes to another server.
    key_env: ClassVar[tuple[str, ...]] = ()
    #: Environment variables that hold other settings and beat the config
    #: file, e.g. ``{"base_url": "OPENAI_BASE_URL"}``.
    setting_env: ClassVar[Mapping[str, str]] = {}
    #: Where this instance sends its requests; ``None`` when not over HTTP.
    base_url: str | None = None

    def __init__(self, *, timeouts: Timeouts | None = None) -> None:
        self.timeouts = timeouts or Timeouts()

    def readiness(self) -> str | None:
        """Why this instance cannot answer yet (a missing key, a runtime not
        installed), without any I/O; ``None`` when it is ready."""
        return None

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open now what the first request would open (a server calls this
        before it listens: the embedded model loads its weights here)."""

    @abstractmethod
    async def connect(self, model: str, messages: list[Any], **params: Any) -> ChunkStream:
        """Send the request and return the open stream of the answer.

        Subclasses spell out the parameters they honour in their own signature.
        """

    async def complete(self, model: str, messages: list[Any], **params: Any) -> Completion:
        """A whole answer. The default joins the stream; remote providers
        override :meth:`reply` with a real non-streaming request instead."""
        params["stream"] = True
        stream = await self.connect(model, messages, **params)
        chunks: list[Chunk] = []
        try:
            async for batch in stream:
                chunks.extend(batch)
        finally:
            await stream.aclose()
        return completion_from_chunks(chunks)

    async def reply(self, model: str, messages: list[Any], **params: Any) -> Reply:
        """A whole answer with its bytes as received, for a caller that passes
        them on (the gateway). The default wraps :meth:`complete`: no bytes."""
        return Reply(await self.complete(model, messages, **params))

    async def embed(self, model: str, body: dict[str, Any]) -> bytes:
        """An OpenAI ``embeddings`` answer, as JSON bytes, for a request body
        (``input`` and any other fields, passed on). Most providers serve none."""
        raise NotFound(f"{self.name} does not serve embeddings", provider=self.name)

    async def stream_text(self, model: str, body: dict[str, Any]) -> ChunkStream:
        """A legacy text completion (OpenAI's ``POST /v1/completions``),
        streamed, for a request body (``prompt`` and any other fields, passed
        on). Each chunk's ``delta.content`` is the choice's ``text``; a
        :class:`Batch` keeps each ``text_completion`` chunk's JSON as received.
        Most providers serve none."""
        raise NotFound(
            f"the model {model!r} is served by {self.name}, which does not serve text "
            "completions (POST /v1/completions); use POST /v1/chat/completions",
            provider=self.name,
            code="model_not_found",
        )

    async def complete_text(self, model: str, body: dict[str, Any]) -> Reply:
        """The whole legacy text completion: the messages of its
        :class:`Completion` hold the choices' ``text``; an HTTP endpoint's
        ``text_completion`` bytes are kept as it sent them. The default joins
        :meth:`stream_text` (no bytes)."""
        stream = await self.stream_text(model, {**body, "stream": True})
        chunks: list[Chunk] = []
        try:
            async for batch in stream:
                chunks.extend(batch)
        finally:
            await stream.aclose()
        return Reply(completion_from_chunks(chunks))

    async def count_tokens(
        self, model: str, messages: list[Any], **params: Any
    ) -> TokenCount | None:
        """The prompt's size in the backend's tokens (the messages as the model
        would see them, ``tools`` included), or ``None`` when this provider
        cannot count: a caller then estimates, and says it is an estimate."""
        return None

    async def list_models(self) -> list[str]:
        """Models this provider can serve now; remote providers ask their endpoint."""
        return list(self.models)

    async def list_model_objects(self) -> list[dict[str, Any]]:
        """The same models as OpenAI's ``/v1/models`` entries: at least ``id``;
        ``created`` and ``owned_by`` where the backend says (an HTTP endpoint's
        own entries). The default knows only the names."""
        return [{"id": name} for name in await self.list_models()]

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release sessions, threads or models held by this instance."""

    # -- introspection -------------------------------------------------------

    @classmethod
    def accepted_params(cls) -> tuple[frozenset[str], bool]:
        """Names ``connect`` accepts, and whether it also takes ``**extra``."""
        cached = cls.__dict__.get("_accepted_cache")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        sig = inspect.signature(cls.connect)
        names = frozenset(
            p.name
            for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        )
        var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        result = (names, var_kw)
        cls._accepted_cache = result  # type: ignore[attr-defined]
        return result

    @classmethod
    def params(cls) -> str:
        """The seed's ``params`` string: ``"<module> supports: (name: type, ...)"``."""
        hints = get_type_hints(cls.connect)
        sig = inspect.signature(cls.connect)
        parts = []
        for p in sig.parameters.values():
            if p.name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            parts.append(f"{p.name}: {_type_name(hints.get(p.name, Any))}")
        return f"{cls.__module__} supports: ({', '.join(parts)})"

    @classmethod
    def settings(cls) -> tuple[str, ...]:
        """Names ``__init__`` accepts: the provider's configuration keys."""
        sig = inspect.signature(cls.__init__)
        return tuple(
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        )

    @classmethod
    def metadata(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "url": cls.url,
            "models": list(cls.models),
            "default_model": cls.default_model,
            "supports_stream": cls.supports_stream,
            "needs_auth": cls.needs_auth,
            "params": cls.params(),
        }


def _type_name(tp: Any) -> str:
    """``str`` for ``str``, ``float`` for ``float | None``, ``list`` for ``list[Any]``."""
    origin = getattr(tp, "__origin__", None)
    args = [a for a in getattr(tp, "__args__", ()) if a is not type(None)]
    if origin is not None and type(tp).__name__ in ("UnionType", "_UnionGenericAlias"):
        return " | ".join(_type_name(a) for a in args)
    if type(tp).__name__ == "UnionType":
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(tp, "__name__", str(tp))


async def aiter_batches(stream: ChunkStream) -> AsyncIterator[list[Chunk]]:
    """Iterate a stream and always close it, even when the caller stops early."""
    try:
        async for batch in stream:
            yield batch
    finally:
        await stream.aclose()
