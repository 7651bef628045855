"""The README, run as printed on a fresh machine (the slow target).

A copy of the working tree (what git would commit) in a temp folder stands in
for a fresh clone; ``HOME`` and ``AILS_HOME`` are new empty folders, and
``PATH`` starts with the copy's ``.venv/bin``, as ``. .venv/bin/activate``
makes it. The README's blocks then run in order (tests/readme_blocks.py says
how each kind is read): the quickstart creates the venv and installs
``.[local]`` from the package index (pip's own cache on this machine is used),
``ails serve`` runs in the background until the next one or the end and must
stop cleanly, ``ails chat`` is driven through a pseudo-terminal (pexpect), and
skipped blocks are checked against their program's ``--help``.

Two departures from the letter, both to keep it fast: ``ails`` is a shell
function that adds ``-o max_tokens=32`` to prompts and chats (answers are not
compared anyway), and port 8000 is replaced by a free one.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pexpect
import pytest

import readme_blocks as rb

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_TOKENS = 32
README_PORT = 8000


def ails_commands() -> set[str]:
    from ails.cli import main

    return set(main.commands)


# -- the fast part, in the default suite -------------------------------------------------


def test_every_block_of_the_readme_is_marked() -> None:
    found = rb.blocks(README.read_text("utf-8"))
    assert [b.kind for b in found if b.kind == "run"], "nothing to run"
    for before, block in itertools.pairwise(found):
        if block.kind == "output":
            assert before.kind == "run", f"{block.where()} follows no run block"
    assert all(b.lang in ("sh", "console", "python") for b in found), [b.lang for b in found]
    assert found[0].kind == "run" and "pip install '.[local]'" in found[0].text


def test_a_transcript_line_the_command_did_not_print_is_reported() -> None:
    paths = rb.Paths(home="/tmp/h", ails_home="/tmp/a")
    shown = ["ails: error: unknown provider 'x'", "exit 2"]
    assert (
        rb.compare("model", shown, "exit 2\n", "ails: error: unknown provider 'x'\n", paths) == []
    )
    assert rb.compare("model", shown, "exit 1\n", "ails: error: other\n", paths) == [
        "shown but not printed: \"ails: error: unknown provider 'x'\"",
        "shown but not printed: 'exit 2'",
    ]
    spinner = "\r⠋ local/default\r\x1b[Kails: loading model /tmp/h/m.gguf…\r\nHi\r\n"
    assert rb.compare("model", ["ails: loading model /home/you/m.gguf…"], spinner, "", paths) == []
    glued = "\r⠋ local/defaultails: loading model /tmp/h/m.gguf…\r\nHi\r\n"
    assert rb.compare("model", ["ails: loading model /home/you/m.gguf…"], glued, "", paths)
    assert rb.compare("model", ["An answer."], "", "", paths) == [
        "an answer is shown but nothing came on stdout"
    ]


# -- the README, run -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prelude(commands: set[str]) -> str:
    """``ails`` with ``-o max_tokens`` added where it asks the model."""
    passthrough = "|".join([*sorted(commands - {"chat", "prompt"}), "-h", "--help", "--version"])
    return (
        "ails() {\n"
        '  case "${1-}" in\n'
        f'    chat|prompt) sub=$1; shift; command ails "$sub" -o max_tokens={MAX_TOKENS} "$@" ;;\n'
        f'    {passthrough}) command ails "$@" ;;\n'
        f'    *) command ails -o max_tokens={MAX_TOKENS} "$@" ;;\n'
        "  esac\n"
        "}\n"
    )


class Server:
    def __init__(self, command: str, machine: Machine) -> None:
        self.command = command
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=machine.clone,
            env=machine.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, port: int, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.command} exited:\n{self.log}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200 and any("ails: serving" in x for x in self.lines):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.command}: no /health after {timeout} s:\n{self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # Ctrl-C, as the README says
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"{self.command} did not stop:\n{self.log}") from None
        self._reader.join(5)
        assert code == 0 and "ails: shutting down" in self.log, f"exit {code}:\n{self.log}"


class Machine:
    """The fresh clone, home and environment the README runs in."""

    def __init__(self, tmp: Path) -> None:
        self.clone = tmp / "ails"
        self.home = tmp / "home"
        self.ails_home = tmp / "ails-home"
        self.home.mkdir()
        self.ails_home.mkdir()
        copy_tree(ROOT, self.clone)
        self.port = free_port()
        self.commands = ails_commands()
        self.prelude = prelude(self.commands)
        self.paths = rb.Paths(str(self.home), str(self.ails_home))
        self.servers: list[Server] = []
        self.timings: list[str] = []
        self.env = self._environment()

    def _environment(self) -> dict[str, str]:
        drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "NO_COLOR", "PYTHONWARNINGS")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AILS_", "OPENAI_")) and k not in drop
        }
        # pip's cache and configuration on this machine stay this machine's.
        real_home = Path.home()
        env.setdefault("PIP_CACHE_DIR", str(real_home / ".cache" / "pip"))
        for conf in (real_home / ".config" / "pip" / "pip.conf", real_home / ".pip" / "pip.conf"):
            if conf.is_file():
                env.setdefault("PIP_CONFIG_FILE", str(conf))
                break
        # A PATH as on a machine where ails was never installed, then activated.
        ours = str(Path(sys.prefix) / "bin") if sys.prefix != sys.base_prefix else None
        path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != ours]
        env["PATH"] = os.pathsep.join([str(self.clone / ".venv" / "bin"), *path])
        env.update(HOME=str(self.home), AILS_HOME=str(self.ails_home), TERM="xterm")
        return env

    def local(self, text: str) -> str:
        return text.replace(f"127.0.0.1:{README_PORT}", f"127.0.0.1:{self.port}").replace(
            f"--port {README_PORT}", f"--port {self.port}"
        )

    def bash(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        done = subprocess.run(
            ["bash", "-c", self.prelude + command],
            cwd=self.clone,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.timings.append(f"{time.monotonic() - started:6.1f} s  {command[:70]}")
        return done

    def serve(self, command: str) -> Server:
        for server in self.servers:  # the README stops one (Ctrl-C) before the next
            server.stop()
        self.servers = []
        started = time.monotonic()
        server = Server(command, self)
        self.servers.append(server)
        server.wait_ready(self.port)
        self.timings.append(f"{time.monotonic() - started:6.1f} s  {command} (ready)")
        if "--no-ui" not in command:  # the chat page the README points at
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=10) as page:
                assert page.status == 200 and b"<html" in page.read().lower()
        return server

    def chat(self, step: rb.Step) -> tuple[str, list[str]]:
        """``ails chat`` in a pseudo-terminal, typing the transcript's ``> `` lines.
        Returns what the terminal showed and each answer's text."""
        started = time.monotonic()
        child = pexpect.spawn(
            "bash",
            ["-c", self.prelude + step.command],
            cwd=str(self.clone),
            env=self.env,
            encoding="utf-8",
            timeout=180,
            dimensions=(40, 200),
        )
        shown = io.StringIO()
        child.logfile_read = shown
        typed = [line[2:] for line in step.shown if line.startswith("> ")]
        answers = []
        for i, text in enumerate(typed):
            child.expect_exact("> ")
            if i:
                answers.append(child.before)
            child.sendline(text)
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0, shown.getvalue()
        self.timings.append(f"{time.monotonic() - started:6.1f} s  {step.command}")
        return shown.getvalue(), answers

    def check_help(self, command: str) -> None:
        prog, options = rb.program(command, self.commands)
        done = self.bash(shlex.join([*prog, "--help"]), timeout=60)
        assert done.returncode == 0, f"{shlex.join(prog)} --help: {done.stderr}"
        for option in options:
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", done.stdout), (
                f"{command}: {shlex.join(prog)} --help does not know {option}"
            )

    def stop_servers(self) -> None:
        servers, self.servers = self.servers, []
        for server in servers:
            server.stop()


def copy_tree(src: Path, dst: Path) -> None:
    """What a clone would hold: the files git tracks or would track."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=src,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        path = src / os.fsdecode(name)
        if path.is_file():  # listed but deleted in the working tree: not in a clone either
            (dst / path.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst / path.relative_to(src))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_readme_runs_as_printed(tmp_path: Path) -> None:
    machine = Machine(tmp_path)
    last: tuple[str, str] = ("", "")  # what the last run block printed: stdout, stderr
    try:
        for block in rb.blocks((machine.clone / "README.md").read_text("utf-8")):
            text = machine.local(block.text)
            if block.kind == "skip":
                for command in rb.commands(text):
                    machine.check_help(command)
            elif block.kind == "output":
                problems = rb.compare("model", text.splitlines(), *last, machine.paths)
                assert not problems, f"{block.where()}: {problems}\nprinted: {last}"
            elif block.lang == "python":
                script = tmp_path / f"block{block.line}.py"
                script.write_text(text, "utf-8")
                done = machine.bash(f"python {shlex.quote(str(script))}")
                assert done.returncode == 0 and done.stdout.strip(), f"{block.where()}: {done}"
                last = (done.stdout, done.stderr)
            elif block.lang == "sh":
                for command in rb.commands(text):
                    last = run_sh(machine, block, command)
            else:
                for step in rb.transcript(text):
                    run_step(machine, block, step)
    finally:
        print("\n".join(machine.timings))
        machine.stop_servers()


def run_sh(machine: Machine, block: rb.Block, command: str) -> tuple[str, str]:
    w = rb.words(command)
    if w[:1] in ([".", ".venv/bin/activate"], ["source", ".venv/bin/activate"]):
        done = machine.bash(f"{command} && command -v ails")
        assert done.stdout.strip() == str(machine.clone / ".venv" / "bin" / "ails"), done
        return done.stdout, done.stderr
    if w[:2] == ["ails", "serve"]:
        server = machine.serve(command)
        return "", server.log
    done = machine.bash(command, timeout=600)
    assert done.returncode == 0, f"{block.where()}: {command}\n{done.stdout}\n{done.stderr}"
    return done.stdout, done.stderr


def run_step(machine: Machine, block: rb.Block, step: rb.Step) -> None:
    where = f"{block.where()}: $ {step.command}"
    if rb.words(step.command) == ["ails", "chat"]:
        screen, answers = machine.chat(step)
        lines = rb.terminal_lines(screen)
        banner = next(x for x in step.shown if x.strip())
        assert banner in lines, f"{where}: no banner {banner!r} in {lines}"
        said = [x for x in step.shown if not x.startswith("> ")]
        problems = rb.compare("model", said, screen, "", machine.paths)
        assert not problems, f"{where}: {problems}\n{screen}"
        typed = [x[2:] for x in step.shown if x.startswith("> ")]
        for question, answer in zip(typed, answers, strict=False):
            text = [
                x
                for x in rb.terminal_lines(answer)[1:]  # the first line is the echo
                if x.strip() and not x.startswith("ails:")
            ]
            assert text, f"{where}: no answer after {question!r}:\n{screen}"
        return
    done = machine.bash(step.command)
    fails = any(x.startswith("ails: error:") for x in step.shown)
    echoed = any(re.fullmatch(r"exit \d+", x) for x in step.shown)
    assert (done.returncode != 0) == (fails and not echoed), f"{where}: exit {done.returncode}"
    mode = rb.ails_mode(step.command)
    problems = rb.compare(mode, step.shown, done.stdout, done.stderr, machine.paths)
    assert not problems, f"{where}: {problems}\nstdout: {done.stdout}\nstderr: {done.stderr}"
