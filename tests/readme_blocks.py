"""The README's code blocks, read the way tests/test_readme.py runs them.

Every fenced block carries a marker on the line before it:

* ``<!-- run -->``: executed. A ``sh`` block is one command per line; a
  ``console`` block is a transcript (``$ command`` then what it printed); a
  ``python`` block is a script.
* ``<!-- output -->``: what the ``run`` block just before it printed.
* ``<!-- skip: reason -->``: not executed; each command is checked against
  its program's ``--help`` instead.

What a transcript shows is compared with what the command printed, as far as
it can be: lines starting with ``ails:`` (progress, warnings, errors) and
``exit N`` always; for ``ails logs`` the prompts (``> ...``) and the header's
model; for commands that print no model text (``ails cache``, ``sha256sum``…)
every line, a number there standing for any number (sizes, counts). Model
answers vary from run to run and are only required to be there. ``[...]``
stands for lines left out. ``/home/you`` is the home folder the README ran in.

Pure functions on strings: no process is started here.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

_MARKER = re.compile(r"^<!--\s*(run|output|skip)(?::\s*(.*?))?\s*-->$")
_FENCE = re.compile(r"^(`{3,})(\w*)\s*$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_DIGITS = re.compile(r"\d+")
ELIDED = "[...]"
README_HOME = "/home/you"

#: ``ails`` subcommands whose output holds no model text: every shown line is compared.
DATA_COMMANDS = frozenset(
    {"models", "providers", "keys", "config", "cache", "completion", "--help", "--version"}
)


@dataclass
class Block:
    kind: str  # run | output | skip
    lang: str
    text: str
    line: int  # of the opening fence, 1-based
    reason: str = ""

    def where(self) -> str:
        return f"README.md:{self.line} ({self.kind} {self.lang})"


@dataclass
class Step:
    """One ``$ command`` of a transcript and the lines shown after it."""

    command: str
    shown: list[str] = field(default_factory=list)


def blocks(readme: str) -> list[Block]:
    """Every fenced block with its marker; a block without one is an error."""
    lines = readme.splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        ticks, lang = fence.group(1), fence.group(2)
        end = next((j for j in range(i + 1, len(lines)) if lines[j] == ticks), None)
        if end is None:
            raise ValueError(f"README.md:{i + 1}: the block is never closed")
        marker = _MARKER.match(lines[i - 1].strip()) if i else None
        if marker is None:
            raise ValueError(
                f"README.md:{i + 1}: a ```{lang} block without <!-- run -->, "
                "<!-- output --> or <!-- skip: reason --> on the line before"
            )
        kind, reason = marker.group(1), marker.group(2) or ""
        if kind == "skip" and not reason:
            raise ValueError(f"README.md:{i + 1}: a skipped block must say why")
        found.append(Block(kind, lang, "\n".join(lines[i + 1 : end]), i + 1, reason))
        i = end + 1
    return found


def commands(text: str) -> list[str]:
    """The commands of a ``sh`` block: one a line, ``\\`` continues, ``#`` comments."""
    out: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(line.strip())
    return out


def transcript(text: str) -> list[Step]:
    steps: list[Step] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append(Step(line[2:]))
        elif steps:
            steps[-1].shown.append(line)
        elif line.strip():
            raise ValueError(f"a transcript must start with '$ ': {line!r}")
    return steps


def words(command: str) -> list[str]:
    """The words of a command, shell-quoted, comments dropped."""
    return shlex.split(command, comments=True)


def ails_mode(command: str) -> str:
    """``model`` (prints model text), ``logs``, ``data`` (no model text), or
    ``other`` (no ``ails`` in it) for the ``ails`` a command runs."""
    w = words(command)
    if "ails" not in w:
        return "other"
    rest = w[w.index("ails") + 1 :]
    first = rest[0] if rest else "--help"
    if first == "logs":
        return "logs"
    if first in DATA_COMMANDS:
        return "data"
    return "model"


def program(command: str, ails_commands: set[str]) -> tuple[list[str], list[str]]:
    """The program a skipped command runs (``ails serve``, ``bash scripts/test.sh``)
    and the options it gives it."""
    w = words(command)
    while w and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w[0]):  # VAR=value before it
        w = w[1:]
    prog = w[:1]
    if len(w) > 1 and (w[1] in ails_commands if w[0] == "ails" else not w[1].startswith("-")):
        prog.append(w[1])  # a subcommand, or the script an interpreter runs
    options = [word.split("=", 1)[0] for word in w[len(prog) :] if word.startswith("-")]
    return prog, options


def terminal_lines(text: str) -> list[str]:
    """What a terminal shows, line by line: colours dropped, and for a line
    redrawn with ``\\r`` (the spinner) only what was written last."""
    out = []
    for line in _ANSI.sub("", text).split("\n"):
        out.append(line.rstrip("\r").rsplit("\r", 1)[-1].rstrip())
    return out


@dataclass
class Paths:
    home: str
    ails_home: str

    def expected(self, line: str) -> str:
        """A README line as it should read here."""
        line = line.replace(f"{README_HOME}/.local/share/ails", self.ails_home)
        line = line.replace(f"{README_HOME}/.config/ails", self.ails_home)
        return line.replace(README_HOME, self.home).rstrip()


def digits_blurred(line: str) -> str:
    """Sizes, counts and dates vary; in data a number stands for any number."""
    return _DIGITS.sub("0", line)


def compare(step_mode: str, shown: list[str], out: str, err: str, paths: Paths) -> list[str]:
    """What the transcript shows that the command did not print (empty: all well)."""
    stdout = terminal_lines(out)
    actual = set(stdout + terminal_lines(err))
    blurred = {digits_blurred(x) for x in actual}
    problems: list[str] = []
    model_text = False
    for line in shown:
        if line == ELIDED or not line.strip():
            continue
        if line.startswith("ails:") or re.fullmatch(r"exit \d+", line):
            # Exact: exit codes, error texts and progress lines say what they say.
            if paths.expected(line) not in actual:
                problems.append(f"shown but not printed: {line!r}")
            continue
        elif step_mode == "logs" and line.startswith("## "):
            model = line.split()[3]
            header = re.compile(rf"^## \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d  {re.escape(model)}  \w+")
            if not any(header.match(x) for x in stdout):
                problems.append(f"no log entry of {model} like {line!r}")
            continue
        elif step_mode == "logs":
            wanted = line.startswith("> ")
            model_text = model_text or not wanted
        else:
            wanted = step_mode in ("data", "other")
            model_text = model_text or not wanted
        if wanted and digits_blurred(paths.expected(line)) not in blurred:
            problems.append(f"shown but not printed: {line!r}")
    if model_text and not out.strip():
        problems.append("an answer is shown but nothing came on stdout")
    return problems
