"""Wire and domain types, shaped like OpenAI's objects.

They are ``msgspec.Struct`` classes: a streamed chunk is decoded straight from
the wire bytes into these objects in C, which costs less than ``json.loads``
into dicts (measured: ~0.35 µs against ~0.47 µs for a typical chunk) and far
less than a validated model object built in Python per chunk, where the SDKs
lose most of their speed. Unknown wire fields are ignored on decode.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Usage(msgspec.Struct, gc=False):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Delta(msgspec.Struct, omit_defaults=True, gc=False):
    role: str | None = None
    content: str | None = None
    tool_calls: list[Any] | None = None
    refusal: str | None = None


class ChunkChoice(msgspec.Struct, gc=False):
    index: int = 0
    delta: Delta = msgspec.field(default_factory=Delta)
    finish_reason: str | None = None
    logprobs: Any = None


class Chunk(msgspec.Struct, omit_defaults=True, gc=False):
    """One ``chat.completion.chunk``: ``chunk.choices[0].delta.content``."""

    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice] = msgspec.field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None
    #: An error object sent in-band by an upstream that failed mid-stream.
    error: Any = None


class FinishOnly(msgspec.Struct, gc=False):
    """A choice of a :class:`ChunkMeta`: only how it ended."""

    finish_reason: str | None = None


class ChunkMeta(msgspec.Struct, gc=False):
    """What a gateway looks at in a chunk it forwards as received: whether a
    choice ended, the usage on the last chunk, an in-band error. Decoding only
    these checks the JSON's syntax but not the other fields' types, and
    builds far fewer objects than a :class:`Chunk` (see
    :attr:`ails.providers.base.Batch.meta`)."""

    choices: list[FinishOnly] = msgspec.field(default_factory=list)
    usage: Usage | None = None
    error: Any = None


class TextChoice(msgspec.Struct, gc=False):
    index: int = 0
    text: str | None = None
    finish_reason: str | None = None
    logprobs: Any = None


class TextChunk(msgspec.Struct, gc=False):
    """One legacy ``text_completion`` chunk (``POST /v1/completions``), as
    decoded; :func:`text_chunk` gives it to callers as a :class:`Chunk`."""

    id: str = ""
    created: int = 0
    model: str = ""
    choices: list[TextChoice] = msgspec.field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None
    error: Any = None


_text_chunk_decoder = msgspec.json.Decoder(TextChunk, strict=False)
_encode_json = msgspec.json.Encoder().encode


def text_chunk(data: bytes | str) -> Chunk:
    """A ``text_completion`` chunk's JSON as a :class:`Chunk` whose
    ``delta.content`` is the choice's ``text``: a text completion streams
    through the same machinery (deadlines, finish detection, usage, in-band
    errors) as a chat answer. Raises ``msgspec.DecodeError`` like the chunk
    decoder."""
    t = _text_chunk_decoder.decode(data)
    return Chunk(
        id=t.id,
        object="text_completion",
        created=t.created,
        model=t.model,
        choices=[
            ChunkChoice(
                index=c.index,
                delta=Delta(content=c.text or None),
                finish_reason=c.finish_reason,
                logprobs=c.logprobs,
            )
            for c in t.choices
        ],
        usage=t.usage,
        system_fingerprint=t.system_fingerprint,
        error=t.error,
    )


def text_completion(data: bytes | str) -> Completion:
    """A whole ``text_completion``'s JSON as a :class:`Completion` whose
    messages hold the choices' ``text``."""
    t = _text_chunk_decoder.decode(data)
    return Completion(
        id=t.id,
        object="text_completion",
        created=t.created,
        model=t.model,
        choices=[
            CompletionChoice(
                index=c.index,
                message=Message(role="assistant", content=c.text or ""),
                finish_reason=c.finish_reason,
                logprobs=c.logprobs,
            )
            for c in t.choices
        ],
        usage=t.usage,
        system_fingerprint=t.system_fingerprint,
    )


class Message(msgspec.Struct, omit_defaults=True):
    """A chat message. ``content`` may be a string or a list of content parts."""

    role: str
    content: str | list[Any] | None = None
    name: str | None = None
    tool_calls: list[Any] | None = None
    tool_call_id: str | None = None


class CompletionChoice(msgspec.Struct):
    index: int = 0
    message: Message = msgspec.field(default_factory=lambda: Message(role="assistant"))
    finish_reason: str | None = None
    logprobs: Any = None


class Completion(msgspec.Struct, omit_defaults=True):
    """A whole ``chat.completion``: ``completion.choices[0].message.content``."""

    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[CompletionChoice] = msgspec.field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None


class ChatRequest(msgspec.Struct, omit_defaults=True):
    """What a caller asks for, provider-neutral.

    ``messages`` are kept as plain dicts so that anything OpenAI-shaped (content
    parts, tool calls) passes through untouched; ``extra`` carries fields ails
    does not know, sent on as they are.
    """

    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None
    user: str | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    response_format: Any = None
    stream_options: dict[str, Any] | None = None
    extra: dict[str, Any] = msgspec.field(default_factory=dict)


def as_message_dicts(messages: Any) -> list[dict[str, Any]]:
    """Accept dicts or ``Message`` objects; return plain dicts (no copy of dicts)."""
    if not isinstance(messages, list):
        raise TypeError("messages must be a list of {'role': ..., 'content': ...} objects")
    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, dict):
            out.append(m)
        elif isinstance(m, Message):
            out.append(msgspec.to_builtins(m))
        else:
            raise TypeError(f"a message must be a dict or ails.Message, not {type(m).__name__}")
    return out


def completion_from_chunks(chunks: list[Chunk]) -> Completion:
    """Join a stream of chunks into one completion (per choice index).

    Tool-call fragments are joined by their ``index``; an answer that is only
    calls has ``content: None``, as OpenAI's. Streamed ``logprobs.content``
    entries are joined into the choice's ``logprobs``.
    """
    texts: dict[int, list[str]] = {}
    finish: dict[int, str | None] = {}
    tool_calls: dict[int, list[Any]] = {}
    logprobs: dict[int, list[Any]] = {}
    usage: Usage | None = None
    first: Chunk | None = None
    for chunk in chunks:
        if first is None:
            first = chunk
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            parts = texts.setdefault(choice.index, [])
            if choice.delta.content:
                parts.append(choice.delta.content)
            if choice.delta.tool_calls:
                _merge_tool_calls(tool_calls.setdefault(choice.index, []), choice.delta.tool_calls)
            if choice.finish_reason is not None:
                finish[choice.index] = choice.finish_reason
            if isinstance(choice.logprobs, dict):
                entries = choice.logprobs.get("content")
                joined = logprobs.setdefault(choice.index, [])
                if isinstance(entries, list):  # a backend's other value: not logprobs
                    joined.extend(entries)
    choices = [
        CompletionChoice(
            index=i,
            message=Message(
                role="assistant",
                content="".join(texts[i]) if texts[i] or i not in tool_calls else None,
                tool_calls=tool_calls.get(i) or None,
            ),
            finish_reason=finish.get(i),
            logprobs={"content": logprobs[i], "refusal": None} if i in logprobs else None,
        )
        for i in sorted(texts)
    ]
    return Completion(
        id=first.id if first else "",
        created=first.created if first else 0,
        model=first.model if first else "",
        choices=choices,
        usage=usage,
        system_fingerprint=first.system_fingerprint if first else None,
    )


class CallPiece(msgspec.Struct, frozen=True):
    """A tool call as OpenAI sends it (whole in a message, in fragments in a
    stream), its fields checked: ``index`` None when it had none."""

    index: int | None
    id: str | None
    type: str | None
    name: str
    arguments: str


#: The highest ``index`` a tool call may have: no answer makes a thousand
#: calls, and a broken index (10**9) must not grow a list to it.
MAX_CALL_INDEX = 1023


def call_piece(d: Any) -> CallPiece | None:
    """``d`` as a :class:`CallPiece`, or None when it is not a tool call:
    a backend's malformed call (``"function": "oops"``, a name that is a
    number) is left out rather than failing the whole answer. Arguments sent
    as a JSON object rather than as its text are taken as that text."""
    if not isinstance(d, dict):
        return None
    fn = d.get("function")
    if fn is None:
        fn = {}
    elif not isinstance(fn, dict):
        return None
    index, cid, kind = d.get("index"), d.get("id"), d.get("type")
    name, arguments = fn.get("name"), fn.get("arguments")
    if isinstance(arguments, dict | list):
        arguments = _encode_json(arguments).decode()
    if index is not None and (type(index) is not int or not 0 <= index <= MAX_CALL_INDEX):
        return None
    for value in (cid, kind, name, arguments):
        if value is not None and not isinstance(value, str):
            return None
    return CallPiece(index, cid, kind, name or "", arguments or "")


def _merge_tool_calls(acc: list[Any], deltas: list[Any]) -> None:
    """Streamed tool calls arrive as fragments keyed by ``index``; join them."""
    for d in deltas:
        piece = call_piece(d)
        if piece is None:
            continue
        idx = len(acc) if piece.index is None else piece.index
        while len(acc) <= idx:
            acc.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        call = acc[idx]
        if piece.id:
            call["id"] = piece.id
        if piece.type:
            call["type"] = piece.type
        call["function"]["name"] += piece.name
        call["function"]["arguments"] += piece.arguments


__all__ = [
    "CallPiece",
    "ChatRequest",
    "Chunk",
    "ChunkChoice",
    "ChunkMeta",
    "Completion",
    "CompletionChoice",
    "Delta",
    "FinishOnly",
    "Message",
    "TextChunk",
    "Usage",
    "as_message_dicts",
    "call_piece",
    "completion_from_chunks",
    "text_chunk",
    "text_completion",
]
