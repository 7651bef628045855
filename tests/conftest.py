"""Shared fixtures: real test upstream servers on 127.0.0.1 (see ``tests/upstream.py``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
if str(_TESTS) not in sys.path:  # ``import upstream`` from any test module
    sys.path.insert(0, str(_TESTS))
try:  # a source checkout without an installed package still works
    import ails  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    sys.path.insert(0, str(_TESTS.parent / "src"))

from upstream import Upstream  # noqa: E402


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A fresh upstream per test (no api key, unsigned)."""
    with Upstream() as up:
        yield up


@pytest.fixture(scope="session")
def upstream_session() -> Iterator[Upstream]:
    """One upstream for the whole session; call ``reset()`` before relying on its records."""
    with Upstream() as up:
        yield up


@pytest.fixture
def signed_upstream() -> Iterator[Upstream]:
    """An upstream that demands the signed protocol (``Authorization: Bearer free``)."""
    with Upstream(signed=True) as up:
        yield up
