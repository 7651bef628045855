"""Third-party providers arrive through the ``ails.providers`` entry-point group."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN = """
from typing import Any
from ails.providers.base import ChunkStream, Provider
from ails.types import Chunk, ChunkChoice, Delta


class _Once(ChunkStream):
    def __init__(self, text: str) -> None:
        self.pieces = [text[i:i + 3] for i in range(0, len(text), 3)]
        self.closed = False

    async def __anext__(self) -> list[Chunk]:
        if not self.pieces:
            raise StopAsyncIteration
        piece = self.pieces.pop(0)
        finish = "stop" if not self.pieces else None
        return [Chunk(choices=[ChunkChoice(delta=Delta(content=piece), finish_reason=finish)])]

    async def aclose(self) -> None:
        self.closed = True


class ReverseProvider(Provider):
    name = "reverse"
    url = "https://example.invalid/reverse"
    models = ("r1",)
    default_model = "r1"
    needs_auth = False

    async def connect(self, model: str, messages: list, temperature: float | None = None,
                      stream: bool = True) -> ChunkStream:
        return _Once(messages[-1]["content"][::-1])
"""

CHECK = """
import ails
from ails.providers import registry
assert "reverse" in registry.names(), registry.names()
msgs = [{"role": "user", "content": "hello plugin"}]
print("".join(ails.create_completion("reverse/r1", msgs)))
print(registry.provider_class("reverse").params())
try:
    list(ails.create_completion("reverse/r1", msgs, max_tokens=5))
except ails.BadRequest as exc:
    print("refused", exc.code)
"""


def install_plugin(where: Path, source: str) -> str:
    """A real installed distribution (a dist-info with its entry point) in
    ``where``; returns the PYTHONPATH that makes it visible."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "ails_reverse.py").write_text(source)
    dist = where / "ails_reverse-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ails-reverse\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[ails.providers]\nreverse = ails_reverse:ReverseProvider\n"
    )
    return str(where)


def test_entry_point_plugin_is_found_and_used(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHECK)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": install_plugin(tmp_path, PLUGIN), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "nigulp olleh"
    assert lines[1] == (
        "ails_reverse supports: (model: str, messages: list, temperature: float, stream: bool)"
    )
    assert lines[2] == "refused unsupported_parameter"


def test_disabled_plugins_are_not_loaded(tmp_path: Path) -> None:
    dist = tmp_path / "x-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: x\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ails.providers]\nx = nowhere:Nothing\n")
    code = "from ails.providers import registry; print(registry.names())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "AILS_DISABLE_PLUGINS": "1", "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert "'x'" not in out.stdout and "'openai'" in out.stdout
