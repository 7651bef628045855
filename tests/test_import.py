"""Importing ails does no network, disk or model work (its time is in bench/)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import builtins, io, json, socket, sys
opened = []
real_open = io.open
def spy_open(file, *a, **k):
    opened.append(str(file))
    return real_open(file, *a, **k)
builtins.open = io.open = spy_open
class NoNet(socket.socket):
    def connect(self, *a):
        raise AssertionError("network at import")
socket.socket = NoNet
before = set(sys.modules)
import ails
heavy = sorted(m for m in ("aiohttp", "xllamacpp", "sqlite3", "click", "ails.client",
                           "ails.local") if m in sys.modules)
print(json.dumps({"heavy": heavy, "opened": [f for f in opened if not f.endswith(".py")]}))
"""


def test_import_is_free_of_io_and_heavy_modules() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(out)
    assert result == {"heavy": [], "opened": []}


def test_lazy_names_resolve() -> None:
    import ails

    assert ails.Client.__name__ == "Client"
    assert ails.AsyncClient.__name__ == "AsyncClient"
    assert callable(ails.create_completion)
