"""The tokenizer's parts without the model: the BPE merge order, special tokens,
the GGUF header reader on small files written here, the chat template's
rendering as llama.cpp does it, and the fit policy (local/fit.py)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from ails.errors import BadRequest
from ails.local.chat_render import render_chat
from ails.local.fit import (
    COUNT_MARGIN,
    OFF_LOOP_CHARS,
    chat_tokens,
    check_fit,
    count_chat,
    count_text,
    text_tokens,
)
from ails.local.gguf import read_fields
from ails.local.tokenizer import Tokenizer, load_tokenizer


def tiny(merges: list[str], specials: tuple[str, ...] = ()) -> Tokenizer:
    return Tokenizer(
        pre="qwen2", merges=merges, specials=list(specials), add_bos=False, chat_template=None
    )


def test_merges_go_by_rank_then_leftmost() -> None:
    tok = tiny(["a b", "ab c", "a a"])
    assert tok.count("abc") == 1  # a+b, then ab+c
    assert tok.count("abab") == 2
    assert tok.count("aaa") == 2  # (a a) a: the leftmost pair first
    assert tok.count("aaaa") == 2
    assert tok.count("cab") == 2  # c, ab: "ab c" needs ab on the left
    assert tok.count("") == 0


def test_bytes_are_spelled_in_gpt2s_alphabet() -> None:
    tok = tiny(["Ġ a"])  # a space is Ġ in the vocabulary
    assert tok.count(" a") == 1
    assert tok.count("é") == 2  # two UTF-8 bytes, no merge for them


def test_special_tokens_are_cut_out_first_longest_first() -> None:
    tok = tiny(["a b"], specials=("<s>", "<s>x"))
    assert tok.count("ab<s>ab") == 3
    assert tok.count("<s>x") == 1  # the longer one wins
    assert tok.count("a<s>b") == 3  # no merge across a special token


def test_the_pre_tokenizer_splits_before_merging() -> None:
    tok = tiny(["a Ġ", "aĠ b", "Ġ b"])
    assert tok.count("a b") == 2  # "a", " b": never "a " + "b", though ranked first


def write_gguf(path: Path, fields: dict[str, Any]) -> None:
    """A GGUF v3 header with ``fields`` (strings, bools, string or int arrays)."""

    def string(s: str) -> bytes:
        raw = s.encode()
        return struct.pack("<Q", len(raw)) + raw

    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(fields))
    for key, value in fields.items():
        out += string(key)
        if isinstance(value, bool):
            out += struct.pack("<IB", 7, value)
        elif isinstance(value, str):
            out += struct.pack("<I", 8) + string(value)
        elif all(isinstance(v, str) for v in value):
            out += struct.pack("<IIQ", 9, 8, len(value)) + b"".join(string(v) for v in value)
        else:
            out += struct.pack("<IIQ", 9, 5, len(value)) + struct.pack(f"<{len(value)}i", *value)
    path.write_bytes(out + b"\0" * 64)  # where the tensors would start


def gguf_fields(pre: str) -> dict[str, Any]:
    return {
        "general.name": "tiny",
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": ["a", "b", "ab", "<|end|>"],
        "tokenizer.ggml.token_type": [1, 1, 1, 3],
        "tokenizer.ggml.merges": ["a b"],
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.chat_template": "{% for m in messages %}{{ m.content }}<|end|>{% endfor %}",
    }


def test_a_tokenizer_from_a_gguf_header(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    write_gguf(path, gguf_fields("qwen2"))
    fields = read_fields(path, frozenset({"tokenizer.ggml.token_type", "general.name", "nope"}))
    assert fields == {"general.name": "tiny", "tokenizer.ggml.token_type": [1, 1, 1, 3]}
    tok = load_tokenizer(path)
    assert tok is not None and tok.chat_template is not None
    assert tok.count("ab<|end|>ab") == 3


def test_an_unknown_tokenizer_is_left_to_the_runtime(tmp_path: Path) -> None:
    other = tmp_path / "other.gguf"
    write_gguf(other, gguf_fields("falcon"))  # a pre-tokenizer not rebuilt here
    assert load_tokenizer(other) is None
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(other.read_bytes()[:100])
    assert load_tokenizer(broken) is None
    with pytest.raises(ValueError, match="unreadable GGUF header"):
        read_fields(broken, frozenset({"tokenizer.ggml.merges"}))
    assert load_tokenizer(tmp_path / "missing.gguf") is None


TEMPLATE = (
    "{% for t in tools %}{{ t | tojson }}|{% endfor %}"
    "{% for m in messages %}{{ m.role }}:{{ m.content }}"
    "{% for c in m.tool_calls or [] %}[{{ c.function.arguments | tojson }}]{% endfor %}|"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


def test_rendering_follows_llama_cpp() -> None:
    tools = [{"type": "function", "function": {"parameters": {"z": 1, "a": "é"}, "name": "f"}}]
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "2"}],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"function": {"name": "f", "arguments": '{"b":1,"a":"ü"}'}}],
        },
    ]
    assert render_chat(TEMPLATE, messages, tools) == (
        '{"type": "function", "function": {"name": "f", "description": "", '
        '"parameters": {"z": 1, "a": "é"}}}|'
        "user:one\n2|"
        'assistant:[{"b": 1, "a": "ü"}]|'
        "assistant:"
    )


def test_a_template_cannot_reach_out_of_its_sandbox() -> None:
    import jinja2

    with pytest.raises(jinja2.TemplateError):
        render_chat("{{ messages.__class__.__mro__ }}", [{"role": "user", "content": "x"}], None)
    with pytest.raises(jinja2.TemplateError, match="no"):
        render_chat("{{ raise_exception('no') }}", [{"role": "user", "content": "x"}], None)


def test_the_fit_policy() -> None:
    def body() -> bytes:
        return b"x" * 100

    n_ctx = 1000
    assert check_fit(n_ctx - COUNT_MARGIN - 1, n_ctx, body, provider="local")  # clearly fits
    assert not check_fit(n_ctx - COUNT_MARGIN, n_ctx, body, provider="local")  # the band
    assert not check_fit(n_ctx + COUNT_MARGIN - 1, n_ctx, body, provider="local")
    with pytest.raises(BadRequest) as info:
        check_fit(n_ctx + COUNT_MARGIN, n_ctx, body, provider="local", param="prompt")
    err = info.value
    assert (err.status, err.code, err.param) == (400, "context_length_exceeded", "prompt")
    assert "maximum context length is 1000 tokens" in str(err)
    assert f"resulted in {n_ctx + COUNT_MARGIN} tokens" in str(err)
    # Uncounted: the bytes bound (its JSON plus 1 KiB within n_ctx bytes).
    assert check_fit(None, 4096, body, provider="local")
    assert not check_fit(None, 1000, body, provider="local")


def test_token_ids_count_as_they_are() -> None:
    assert text_tokens(None, [1, 2, 3]) == 3
    assert text_tokens(None, "text") is None  # no tokenizer: unknown
    assert text_tokens(tiny(["a b"]), ["ab"]) == 1


async def test_a_long_prompt_counts_the_same_off_the_loop() -> None:
    tok = Tokenizer(
        pre="qwen2",
        merges=["a b", "Ġ ab"],
        specials=[],
        add_bos=False,
        chat_template="{% for m in messages %}{{ m.content }}{% endfor %}",
    )
    text = "ab" * 10 + " ab" * (OFF_LOOP_CHARS // 3)  # past the bound: a worker thread
    body = {"messages": [{"role": "user", "content": text}]}
    expected = 10 + OFF_LOOP_CHARS // 3  # "abab…ab": ten "ab"; then each " ab" is one
    assert tok.count(text) == expected
    assert await count_chat(tok, body) == chat_tokens(tok, body) == expected
    assert await count_text(tok, [text]) == expected
