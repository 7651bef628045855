"""Which ``pattern`` values the runtime's schema converter turns into a grammar.

It takes anchored patterns (``^…$``) made of literals, ``.``, classes ``[…]``,
groups ``(…)`` and ``(?:…)``, ``|`` and the quantifiers ``* + ? {m} {m,} {m,n}``.
Anything else it replaces by "any string" with only a warning on stderr (seen
with the pinned runtime: an unanchored pattern, ``\\d``, ``\\w``, a lookahead),
so :mod:`ails.local.schema` refuses those patterns instead.
"""

from __future__ import annotations

#: Punctuation a pattern may escape; an escaped letter (``\\d``, ``\\w``) is a class
#: the converter cannot express.
_ESCAPABLE = frozenset("^$.[](){}|*+?\\/-")


def pattern_problem(pattern: str) -> str | None:
    """Why the converter cannot express ``pattern`` as a grammar, or None.

    It takes anchored patterns (``^…$``) of literals, ``.``, classes ``[…]``,
    groups ``(…)``/``(?:…)``, ``|`` and the quantifiers ``* + ? {m} {m,} {m,n}``;
    anything else (an unanchored pattern, ``\\d``, a lookahead) it replaces by
    "any string".
    """
    if len(pattern) < 2 or not pattern.startswith("^") or not pattern.endswith("$"):
        return "it must start with '^' and end with '$'"
    body = pattern[1:-1]
    if body.endswith("\\") and not body.endswith("\\\\"):
        return "it must start with '^' and end with '$'"
    depth = 0
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1 : i + 2]
            if nxt not in _ESCAPABLE:
                return f"the escape '\\{nxt}' is not supported (write a class such as [0-9])"
            i += 2
            continue
        if c == "[":
            end = _class_end(body, i)
            if end < 0:
                return "a '[' is not closed"
            if end == i + 1:  # a grammar class with no character allows no token
                return "an empty class '[]' matches nothing"
            problem = _class_problem(body[i + 1 : end])
            if problem:
                return problem
            i = end + 1
            continue
        if c == "(":
            if body.startswith("(?", i) and not body.startswith("(?:", i):
                return "only plain and (?:…) groups are supported, not lookarounds or names"
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return "a ')' has no '('"
        elif c in "^$":
            return f"'{c}' is supported only at the ends"
        elif c == "{":
            end = body.find("}", i)
            spec = body[i + 1 : end] if end > 0 else ""
            low, _, high = spec.partition(",")
            if end < 0 or not low.isdigit() or not (high == "" or high.isdigit()):
                return "a '{' must be a count such as {3}, {1,} or {1,3}"
            if high and int(low) > int(high):
                return f"'{{{spec}}}' repeats at least {low} and at most {high} times: nothing"
            i = end + 1
            continue
        i += 1
    if depth:
        return "a '(' is not closed"
    return None


def _class_end(body: str, start: int) -> int:
    i = start + 1
    while i < len(body):
        if body[i] == "\\":
            i += 2
            continue
        if body[i] == "]":
            return i
        i += 1
    return -1


def _class_problem(inner: str) -> str | None:
    i = 0
    while i < len(inner):
        if inner[i] == "\\":
            nxt = inner[i + 1 : i + 2]
            if nxt not in _ESCAPABLE:
                return f"the escape '\\{nxt}' in a class is not supported (write 0-9, a-z…)"
            i += 2
            continue
        i += 1
    return None


__all__ = ["pattern_problem"]
