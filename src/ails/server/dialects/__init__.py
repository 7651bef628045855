"""The gateway's API dialects other than Chat Completions, each a pair of pure
translations at the edge: the client's request into the one internal chat
request, and the internal chunk stream (or completion) into the client's events
or answer. No I/O here; the routes that use them live with the gateway.

* :mod:`.messages`: Anthropic's Messages API (``POST /v1/messages``).
* :mod:`.responses`: OpenAI's Responses API (``POST /v1/responses``).
"""

from ails.server.dialects.common import DialectEvent

__all__ = ["DialectEvent"]
