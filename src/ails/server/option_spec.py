"""What an option of ``ails serve`` is, and the names derived from it.

:class:`Option` says how one option is given and checked: its type, help,
flag, TOML key, environment variable and the checks on its value. The field
helpers :func:`option` and :func:`list_option` attach one to a field of
:class:`~ails.server.options.GatewayConfig`, where every option is declared;
:func:`flag_of`, :func:`env_of` and :func:`file_key_of` give the names the
command line, the environment and the config file use for it.

Importing this module imports no aiohttp: ``ails --help`` builds the flags.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Option:
    """How one option is given and checked (the name is the field's)."""

    help: str
    #: ``int``, ``float``, ``str`` or ``bool``; a list option holds ``str``s.
    kind: type = str
    #: Repeatable on the command line, a list in the file.
    multiple: bool = False
    #: The flag without dashes (default: the name with ``-``); ``""``: none.
    flag: str | None = None
    #: The TOML key (default: the name); ``""``: not in the file.
    file_key: str | None = None
    #: The environment variable (default ``AILS_SERVE_<NAME>`` for a scalar,
    #: none for a list); ``""``: none.
    env: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    #: The least value allowed.
    at_least: float | None = None
    at_most: float | None = None
    #: More than 0 (seconds, a window).
    positive: bool = False
    #: 0 or less means "no limit" (``None``).
    zero_is_none: bool = False
    #: Turns the given text into the field's value (a quota).
    parse: Callable[[str], Any] | None = None
    #: What a wrong value in the file should have been, for the error.
    what: str = ""


def option(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"option": Option(help, **kw)})


def list_option(help: str, *, repr: bool = True, **kw: Any) -> Any:
    return field(
        default_factory=list, repr=repr, metadata={"option": Option(help, multiple=True, **kw)}
    )


SECONDS = {"kind": float, "metavar": "SECONDS", "what": "seconds"}


def flag_of(name: str, opt: Option) -> str:
    return opt.flag if opt.flag is not None else name.replace("_", "-")


def env_of(name: str, opt: Option) -> str:
    """Every scalar has ``AILS_SERVE_<NAME>``; a list only the name it declares."""
    if opt.env is not None:
        return opt.env
    return "" if opt.multiple else f"AILS_SERVE_{name.upper()}"


def file_key_of(name: str, opt: Option) -> str:
    return opt.file_key if opt.file_key is not None else name


__all__ = ["SECONDS", "Option", "env_of", "file_key_of", "flag_of", "list_option", "option"]
