"""Shared by the dialect tests: JSON values of any shape for hypothesis, and
a dialect's events read back as a client reads them."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from ails.wire import named_events

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
#: Any JSON value, a scalar half the time: a wrong value is more often a
#: number or a string than a nested structure.
anything = scalars | st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def sent_frames(events: list[Any]) -> list[tuple[str, Any]]:
    """The events as a client reads them: written by ``named_events``, then
    split into frames of exactly one ``event:`` and one ``data:`` line (of
    JSON) each."""
    out = []
    for frame in named_events(events).decode().split("\n\n")[:-1]:
        event, data = frame.split("\n")
        assert event.startswith("event: ") and data.startswith("data: "), frame
        out.append((event[len("event: ") :], json.loads(data[len("data: ") :])))
    return out
