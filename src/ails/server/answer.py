"""A whole JSON answer, made for less: :class:`JSONAnswer`.

``web.Response(body=..., content_type="application/json", headers=...)`` is
four Python calls (``Response.__init__``, ``StreamResponse.__init__``,
``_set_status``, the ``body`` setter), about 12k instructions, on every
non-streamed answer. :class:`JSONAnswer` sets the same attributes itself, for
about 5k. Those are aiohttp's private attributes, so the import checks that
it makes exactly what aiohttp makes (:func:`_made_alike`); with an aiohttp
that differs, it is made by aiohttp's own ``__init__`` (slower, never wrong),
and a test fails (tests/test_intake_units.py) so that this is looked at.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.compression_utils import MAX_SYNC_CHUNK_SIZE
from multidict import CIMultiDict

from ails.server.errors import JSON_TYPE

_CONTENT_TYPE = "Content-Type"


class JSONAnswer(web.Response):
    """``web.Response(body=body, content_type=JSON_TYPE, headers=headers)``, status 200."""

    def __init__(self, body: bytes, headers: Mapping[str, str]) -> None:
        if not FAST:
            super().__init__(body=body, content_type=JSON_TYPE, headers=headers)
            return
        real: CIMultiDict[str] = CIMultiDict(headers)
        real[_CONTENT_TYPE] = JSON_TYPE
        self._state = {}
        self._headers = real
        self._status = 200
        self._reason = "OK"
        self._body = body
        self._compressed_body = None
        self._zlib_executor_size = MAX_SYNC_CHUNK_SIZE
        self._zlib_executor = None


def _made_alike() -> bool:
    """Whether :class:`JSONAnswer` makes what aiohttp's ``web.Response`` does:
    the same attributes, of the same types, with the same values (the
    headers in the same order)."""
    headers = {"x-request-id": "r", "x-other": "o"}
    theirs = web.Response(body=b"{}", content_type=JSON_TYPE, headers=headers)
    return _attributes(JSONAnswer(b"{}", headers)) == _attributes(theirs)


def _attributes(response: web.Response) -> dict[str, tuple[type, Any]]:
    return {
        name: (type(value), list(value.items()) if isinstance(value, CIMultiDict) else value)
        for name, value in vars(response).items()
    }


#: Made by hand (True), or by aiohttp's own ``__init__`` (an aiohttp whose
#: ``Response`` is made otherwise than this module knows).
FAST = True
FAST = _made_alike()

__all__ = ["FAST", "JSONAnswer"]
