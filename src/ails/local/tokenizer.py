"""The embedded model's tokenizer, outside the runtime: a prompt counted before it queues.

The runtime tokenises a request only once it has a slot, and its Python API has
no tokenizer call; so to refuse a prompt over the context at once, and to tell a
waiting client where it stands, ails rebuilds the tokenizer from the GGUF
header (read once per model file, lazily, and cached): llama.cpp's byte-level
BPE as its ``gpt2`` tokenizer model does it.

1. The special tokens (control and user-defined, ``<|im_start|>``…) are cut out
   first, longest first, as llama.cpp does with ``parse_special`` (the server
   parses them in every prompt, user text included).
2. Each piece between them is split by the pre-tokenizer's regex (named by
   ``tokenizer.ggml.pre``; only those listed in :data:`PRE_TOKENIZERS`, each
   checked against the runtime, are rebuilt: another model falls back to the
   runtime's own count).
3. Each word's bytes, mapped to GPT-2's printable alphabet (the vocabulary's
   spelling), are merged pair by pair, the pair of lowest merge rank first and
   the leftmost among equals: llama.cpp's order.

Only counts are needed, so no ids are looked up: a word's count is how many
symbols remain. Counts of words already seen are kept (a bounded memo).
"""

from __future__ import annotations

import heapq
import threading
from pathlib import Path

import regex

from ails.local.gguf import read_fields

#: ``tokenizer.ggml.pre`` -> the pre-tokenizer's split (llama.cpp's llama-vocab.cpp).
PRE_TOKENIZERS = {
    "qwen2": (
        r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
        r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    ),
}
#: Token types that are split out of a prompt as one token (llama.cpp's CONTROL
#: and USER_DEFINED).
_SPECIAL_TYPES = frozenset({3, 4})
_KEYS = frozenset(
    {
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.chat_template",
    }
)
#: Distinct words whose counts are remembered before the memo starts over,
#: and the longest word remembered (a long one is rare, and would hold memory).
_MEMO_WORDS = 65536
_MEMO_CHARS = 64


def _byte_alphabet() -> list[str]:
    """GPT-2's map of the 256 bytes to printable characters (how the vocabulary
    spells bytes: a space is ``Ġ``)."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


_ALPHABET = _byte_alphabet()
_BYTE_TABLE = {i: c for i, c in enumerate(_ALPHABET)}


class Tokenizer:
    """Counts the tokens llama.cpp makes of a text, from a GGUF's tokenizer."""

    def __init__(
        self,
        *,
        pre: str,
        merges: list[str],
        specials: list[str],
        add_bos: bool,
        chat_template: str | None,
    ) -> None:
        self._split = regex.compile(PRE_TOKENIZERS[pre])
        self._ranks: dict[tuple[str, str], int] = {}
        for rank, merge in enumerate(merges):
            left, _, right = merge.partition(" ")
            self._ranks[(left, right)] = rank
        ordered = sorted(specials, key=len, reverse=True)
        self._specials = (
            regex.compile("|".join(regex.escape(s) for s in ordered)) if ordered else None
        )
        self._bos = 1 if add_bos else 0
        self.chat_template = chat_template
        self._memo: dict[str, int] = {}
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        """Tokens of ``text`` as the runtime tokenises a prompt (specials parsed,
        BOS added when the model asks for it)."""
        total = self._bos
        specials = self._specials
        start = 0
        if specials is not None:
            for found in specials.finditer(text):
                total += self._count_plain(text[start : found.start()]) + 1
                start = found.end()
        return total + self._count_plain(text[start:])

    def _count_plain(self, text: str) -> int:
        if not text:
            return 0
        memo = self._memo
        total = 0
        for word in self._split.findall(text):
            n = memo.get(word)
            if n is None:
                n = self._merge_count(word.encode("utf-8").decode("latin-1").translate(_BYTE_TABLE))
                if len(word) > _MEMO_CHARS:
                    total += n
                    continue
                with self._lock:  # threads share the memo (the sync client and a gateway)
                    if len(memo) >= _MEMO_WORDS:
                        memo.clear()
                    memo[word] = n
            total += n
        return total

    def _merge_count(self, symbols_text: str) -> int:
        """How many tokens BPE leaves of one word: lowest-rank pair first, leftmost
        among equals; a heap keeps a long word (a base64 run) O(n log n)."""
        n = len(symbols_text)
        if n < 2:
            return n
        ranks = self._ranks
        symbols: list[str | None] = list(symbols_text)
        after = [*range(1, n), -1]
        before = [*range(-1, n - 1)]
        heap: list[tuple[int, int, str, str]] = []
        for i in range(n - 1):
            pair = (symbols_text[i], symbols_text[i + 1])
            rank = ranks.get(pair)
            if rank is not None:
                heap.append((rank, i, *pair))
        heapq.heapify(heap)
        left_count = n
        while heap:
            _, i, a, b = heapq.heappop(heap)
            j = after[i]
            if j < 0 or symbols[i] != a or symbols[j] != b:
                continue  # stale: one side merged since
            merged = a + b
            symbols[i] = merged
            symbols[j] = None
            k = after[j]
            after[i] = k
            if k >= 0:
                before[k] = i
            left_count -= 1
            p = before[i]
            if p >= 0:
                prev = symbols[p]
                assert prev is not None
                rank = ranks.get((prev, merged))
                if rank is not None:
                    heapq.heappush(heap, (rank, p, prev, merged))
            if k >= 0:
                nxt = symbols[k]
                assert nxt is not None
                rank = ranks.get((merged, nxt))
                if rank is not None:
                    heapq.heappush(heap, (rank, i, merged, nxt))
        return left_count


def load_tokenizer(path: Path) -> Tokenizer | None:
    """The tokenizer of the GGUF at ``path``; None when it is not one rebuilt here
    (another tokenizer model or pre-tokenizer, an unreadable header)."""
    try:
        fields = read_fields(path, _KEYS)
    except (OSError, ValueError):
        return None
    tokens = fields.get("tokenizer.ggml.tokens")
    types = fields.get("tokenizer.ggml.token_type")
    merges = fields.get("tokenizer.ggml.merges")
    pre = fields.get("tokenizer.ggml.pre")
    template = fields.get("tokenizer.chat_template")
    if (
        fields.get("tokenizer.ggml.model") != "gpt2"
        or not isinstance(pre, str)
        or pre not in PRE_TOKENIZERS
        or not isinstance(tokens, list)
        or not isinstance(types, list)
        or not isinstance(merges, list)
        or len(types) != len(tokens)
    ):
        return None
    specials = [str(t) for t, kind in zip(tokens, types, strict=True) if kind in _SPECIAL_TYPES]
    return Tokenizer(
        pre=pre,
        merges=[str(m) for m in merges],
        specials=specials,
        add_bos=fields.get("tokenizer.ggml.add_bos_token") is True,
        chat_template=template if isinstance(template, str) else None,
    )


_cache_lock = threading.Lock()
_cache: dict[Path, Tokenizer | None] = {}


def tokenizer_for(path: Path) -> Tokenizer | None:
    """:func:`load_tokenizer`, once per model file and process."""
    with _cache_lock:
        if path not in _cache:
            _cache[path] = load_tokenizer(path)
        return _cache[path]


__all__ = ["PRE_TOKENIZERS", "Tokenizer", "load_tokenizer", "tokenizer_for"]
