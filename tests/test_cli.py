"""The ``ails`` command, run as a subprocess against the test upstream.

Models are the upstream's scenarios (tests/upstream.py): ``openai/chunks:3``
answers ``tok0 tok1 tok2``, a plain name like ``openai/echo`` echoes the words
of the last message, ``openai/slow:N:MS`` streams N chunks MS ms apart.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ails.store import Exchange, Store
from cli_helpers import AILS, clean_env, run
from upstream import Upstream


@pytest.fixture
def up(upstream_session: Upstream) -> Iterator[Upstream]:
    upstream_session.reset()
    yield upstream_session


@pytest.fixture
def env(tmp_path: Path, up: Upstream) -> dict[str, str]:
    return clean_env(tmp_path / "home", up.base_url)


def last_messages(up: Upstream) -> list[dict[str, str]]:
    body = up.requests[-1].body
    assert isinstance(body, dict)
    return list(body["messages"])


# -- prompt ---------------------------------------------------------------------


def test_prompt_prints_the_answer(env: dict[str, str], up: Upstream) -> None:
    result = run(env, "-m", "openai/chunks:3", "Hello there")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "tok0 tok1 tok2 \n"
    assert result.stderr == ""  # no spinner, no notes when stderr is not a terminal
    assert last_messages(up) == [{"role": "user", "content": "Hello there"}]
    assert up.requests[-1].headers["authorization"] == "Bearer test"


def test_answer_streams_in_pieces(env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [AILS, "-m", "openai/slow:5:150", "go"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    reads: list[tuple[float, bytes]] = []
    fd = proc.stdout.fileno()
    while True:
        data = os.read(fd, 4096)
        if not data:
            break
        reads.append((time.monotonic(), data))
    assert proc.wait(10) == 0
    assert b"".join(d for _, d in reads) == b"tok0 tok1 tok2 tok3 tok4 \n"
    with_text = [t for t, d in reads if d.strip()]
    assert len(with_text) >= 3, reads  # pieces, not one write at the end
    assert with_text[-1] - with_text[0] >= 0.3


def test_stdin_and_prompt_both_reach_the_model(env: dict[str, str], up: Upstream) -> None:
    result = run(env, "-m", "openai/echo", "summarise this", input="piped words here\n")
    assert result.returncode == 0, result.stderr
    content = last_messages(up)[-1]["content"]
    assert "summarise this" in content and "piped words here" in content
    assert result.stdout.split() == ["summarise", "this", "piped", "words", "here"]


def test_stdin_alone_is_the_prompt(env: dict[str, str], up: Upstream) -> None:
    result = run(env, "-m", "openai/echo", input="only stdin\n")
    assert result.returncode == 0, result.stderr
    assert last_messages(up)[-1]["content"].strip() == "only stdin"


def test_system_prompt_and_options(env: dict[str, str], up: Upstream) -> None:
    result = run(
        env,
        "-m",
        "openai/chunks:9",
        "-s",
        "be brief",
        "-o",
        "temperature=0.2",
        "-o",
        "max_tokens=2",
        "-o",
        "seed=7",
        "-o",
        "stop=END",
        "hi",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "tok0 tok1 \n"  # max_tokens reached the upstream
    body = up.requests[-1].body
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body["temperature"] == 0.2 and body["seed"] == 7 and body["stop"] == "END"


def test_no_stream(env: dict[str, str], up: Upstream) -> None:
    result = run(env, "-m", "openai/chunks:2", "--no-stream", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "tok0 tok1 \n"
    assert up.requests[-1].body["stream"] is False


def test_json_stream_is_json_lines(env: dict[str, str]) -> None:
    result = run(env, "-m", "openai/chunks:2", "--json", "hi")
    assert result.returncode == 0, result.stderr
    chunks = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "tok0 tok1 "
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_streamed_openai_answers_log_their_token_usage(env: dict[str, str], up: Upstream) -> None:
    result = run(env, "-m", "openai/chunks:3", "count for me")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "tok0 tok1 tok2 \n"  # the usage chunk prints nothing
    assert up.requests[-1].body["stream_options"] == {"include_usage": True}
    logged = json.loads(run(env, "logs", "--json").stdout)
    usage = logged[0]["usage"]
    assert usage["completion_tokens"] == 3 and usage["prompt_tokens"] > 0


def test_json_no_stream_is_a_completion(env: dict[str, str]) -> None:
    result = run(env, "-m", "openai/chunks:2", "--json", "--no-stream", "hi")
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout)
    assert done["object"] == "chat.completion"
    assert done["choices"][0]["message"] == {"role": "assistant", "content": "tok0 tok1 "}
    assert done["usage"]["completion_tokens"] == 2


def test_no_control_codes_when_piped(env: dict[str, str]) -> None:
    for args in (["-m", "openai/chunks:3", "hi"], ["logs"], ["providers"], ["models"]):
        result = run(env, *args)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout and "\r" not in result.stdout
        assert "\x1b" not in result.stderr


def test_ctrl_c_stops_the_answer_and_the_upstream(env: dict[str, str], up: Upstream) -> None:
    proc = subprocess.Popen(
        [AILS, "-m", "openai/endless", "go"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    assert ready, "no output"
    first = os.read(proc.stdout.fileno(), 4096)
    assert first.startswith(b"tok0")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert b"Traceback" not in err
    assert up.wait_for_disconnects(1, timeout=5)  # closing the stream closed the connection


# -- conversations ----------------------------------------------------------------


def test_continue_the_last_conversation(env: dict[str, str], up: Upstream) -> None:
    assert run(env, "-m", "openai/echo", "my name is Ada").returncode == 0
    assert run(env, "-m", "openai/echo", "unrelated other conversation").returncode == 0
    assert run(env, "-m", "openai/echo", "I like tea").returncode == 0
    result = run(env, "-c", "what do I like")
    assert result.returncode == 0, result.stderr
    assert up.requests[-1].body["model"] == "echo"  # the conversation's model was kept
    assert last_messages(up) == [
        {"role": "user", "content": "I like tea"},
        {"role": "assistant", "content": "I like tea "},
        {"role": "user", "content": "what do I like"},
    ]


def test_cid_continues_a_given_conversation(env: dict[str, str], up: Upstream) -> None:
    run(env, "-m", "openai/echo", "-s", "you are terse", "first conversation")
    listing = json.loads(run(env, "logs", "--json").stdout)
    cid = listing[-1]["conversation_id"]
    run(env, "-m", "openai/echo", "second conversation")
    result = run(env, "--cid", cid[:12], "back to the first")
    assert result.returncode == 0, result.stderr
    assert last_messages(up) == [
        {"role": "system", "content": "you are terse"},  # kept from the conversation
        {"role": "user", "content": "first conversation"},
        {"role": "assistant", "content": "first conversation "},
        {"role": "user", "content": "back to the first"},
    ]
    shown = json.loads(run(env, "logs", "--cid", cid, "--json").stdout)
    assert [e["prompt"] for e in shown] == ["first conversation", "back to the first"]


def test_continue_with_nothing_logged_fails(env: dict[str, str]) -> None:
    result = run(env, "-c", "hello")
    assert result.returncode == 1
    assert result.stderr.startswith("ails: error: no conversation to continue")


# -- logs ---------------------------------------------------------------------------


def test_logs_search_finds_a_word_of_an_earlier_answer(env: dict[str, str]) -> None:
    assert run(env, "-m", "openai/chunks:3", "count for me").returncode == 0
    assert run(env, "-m", "openai/echo", "pineapple smoothie recipe").returncode == 0
    found = run(env, "logs", "-q", "tok1")
    assert found.returncode == 0, found.stderr
    assert "count for me" in found.stdout and "pineapple" not in found.stdout
    as_json = json.loads(run(env, "logs", "-q", "pineapple", "--json").stdout)
    assert [e["prompt"] for e in as_json] == ["pineapple smoothie recipe"]
    assert as_json[0]["model"] == "openai/echo"
    odd = run(env, "logs", "-q", 'it\'s "quoted" -x')  # FTS5 syntax must not leak through
    assert odd.returncode == 0, odd.stderr


def test_logs_list_and_current(env: dict[str, str]) -> None:
    with Store(Path(env["AILS_HOME"]) / "logs.db") as log:  # as four earlier runs would have
        for word in ("alpha", "beta", "gamma", "delta"):
            log.log(Exchange(model="openai/echo", prompt=word, response=f"{word} "))
    listing = run(env, "logs")
    assert listing.returncode == 0
    assert "alpha" not in listing.stdout and "delta" in listing.stdout  # the last 3
    assert "alpha" in run(env, "logs", "-n", "0").stdout
    run(env, "-c", "epsilon")
    current = json.loads(run(env, "logs", "-c", "--json").stdout)
    assert [e["prompt"] for e in current] == ["delta", "epsilon"]


def test_logs_off_and_on(env: dict[str, str]) -> None:
    run(env, "-m", "openai/echo", "logged one")
    assert run(env, "logs", "off").returncode == 0
    assert "logging: off" in run(env, "logs", "status").stdout
    run(env, "-m", "openai/echo", "secret unlogged words")
    assert "secret" not in run(env, "logs", "-n", "0").stdout
    assert run(env, "logs", "on").returncode == 0
    run(env, "-m", "openai/echo", "logged again")
    prompts = [e["prompt"] for e in json.loads(run(env, "logs", "-n", "0", "--json").stdout)]
    assert prompts == ["logged one", "logged again"]
    assert run(env, "-m", "openai/echo", "--no-log", "not this").returncode == 0
    assert "not this" not in run(env, "logs", "-n", "0").stdout


def test_logs_path_and_status(env: dict[str, str]) -> None:
    path = run(env, "logs", "path").stdout.strip()
    assert path == str(Path(env["AILS_HOME"]) / "logs.db")
    run(env, "-m", "openai/echo", "one")
    status = run(env, "logs", "status").stdout
    assert "logging: on" in status and "exchanges: 1" in status


# -- keys and config ------------------------------------------------------------------

SECRET = "sk-secret-abcdef123456"


def test_keys_set_is_private_and_used(env: dict[str, str], up: Upstream) -> None:
    stored = run(env, "keys", "set", "openai", input=SECRET + "\n")
    assert stored.returncode == 0, stored.stderr
    assert SECRET not in stored.stdout + stored.stderr  # never echoed
    path = Path(run(env, "keys", "path").stdout.strip())
    assert path == Path(env["AILS_HOME"]) / "keys.json"
    assert (path.stat().st_mode & 0o777) == 0o600
    assert json.loads(path.read_text()) == {"openai": SECRET}
    listed = run(env, "keys", "list")
    assert "openai" in listed.stdout and SECRET not in listed.stdout

    no_env_key = {k: v for k, v in env.items() if k != "OPENAI_API_KEY"}
    assert run(no_env_key, "-m", "openai/echo", "hi").returncode == 0
    assert up.requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    # The environment overrides the keys file.
    assert run(env, "-m", "openai/echo", "hi").returncode == 0
    assert up.requests[-1].headers["authorization"] == "Bearer test"
    generic = {**no_env_key, "AILS_KEY_OPENAI": "from-generic"}
    assert run(generic, "-m", "openai/echo", "hi").returncode == 0
    assert up.requests[-1].headers["authorization"] == "Bearer from-generic"


def test_keys_set_refuses_an_empty_key(env: dict[str, str]) -> None:
    result = run(env, "keys", "set", "openai", input="\n")
    assert result.returncode == 2
    assert not (Path(env["AILS_HOME"]) / "keys.json").exists()


def test_config_file_default_model_aliases_and_base_url(env: dict[str, str], up: Upstream) -> None:
    home = Path(env["AILS_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        'default_model = "openai/chunks:2"\n\n'
        '[aliases]\nthree = "openai/chunks:3"\n\n'
        f'[providers.openai]\nbase_url = "{up.base_url}"\napi_key = "{SECRET}"\n'
    )
    plain = {k: v for k, v in env.items() if not k.startswith("OPENAI_")}
    assert run(plain, "hi").stdout == "tok0 tok1 \n"
    assert run(plain, "-m", "three", "hi").stdout == "tok0 tok1 tok2 \n"
    assert up.requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    assert run({**plain, "AILS_MODEL": "openai/chunks:1"}, "hi").stdout == "tok0 \n"
    assert run(plain, "config", "path").stdout.strip() == str(home / "config.toml")

    shown = run({**plain, "OPENAI_API_KEY": "sk-env-key-9876543210"}, "config", "show")
    assert shown.returncode == 0, shown.stderr
    assert SECRET not in shown.stdout and "sk-env-key-9876543210" not in shown.stdout
    assert 'api_key = "sk-…3210"  # OPENAI_API_KEY' in shown.stdout
    assert 'default_model = "openai/chunks:2"' in shown.stdout
    assert 'three = "openai/chunks:3"' in shown.stdout
    as_json = json.loads(run(plain, "config", "show", "--json").stdout)
    assert as_json["providers"]["openai"]["api_key"]["value"] == "sk-…3456"


def test_bad_config_file_is_one_line(env: dict[str, str]) -> None:
    home = Path(env["AILS_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text("default_model = \n")
    result = run(env, "hi")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "not valid TOML" in result.stderr


# -- models and providers ---------------------------------------------------------------


def test_models(env: dict[str, str]) -> None:
    result = run(env, "models")
    assert result.returncode == 0, result.stderr
    assert "local/default" in result.stdout and "openai/*" in result.stdout
    remote = json.loads(run(env, "models", "--remote", "--json").stdout)
    assert "openai/test-model" in [m["model"] for m in remote["models"]]
    assert remote["default"] == "local/default"


def test_providers(env: dict[str, str], up: Upstream) -> None:
    listing = run(env, "providers")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["NAME", "CONFIGURED", "STREAM", "AUTH", "URL"]
    openai_row = next(line for line in lines if line.startswith("openai"))
    assert openai_row.split() == ["openai", "yes", "yes", "yes", up.base_url]
    signed_row = next(line for line in lines if line.startswith("signed"))
    assert signed_row.split()[1] == "no" and "signed: " in listing.stderr

    shown = run(env, "providers", "show", "openai")
    assert shown.returncode == 0, shown.stderr
    for field in ("url:", "supports_stream: yes", "needs_auth: yes", "params:", "temperature"):
        assert field in shown.stdout
    meta = json.loads(run(env, "providers", "show", "openai", "--json").stdout)
    assert meta["configured"] is True and meta["base_url"] == up.base_url
    assert "max_tokens: int" in meta["params"]
    assert "test" not in json.dumps(meta["key"])  # masked

    unconfigured = {k: v for k, v in env.items() if not k.startswith("OPENAI_")}
    meta = json.loads(run(unconfigured, "providers", "show", "openai", "--json").stdout)
    assert meta["configured"] is False and "ails keys set openai" in meta["status"]
    assert run(env, "providers", "show", "nosuch").returncode == 2


def test_named_provider_from_the_config_file(env: dict[str, str], up: Upstream) -> None:
    home = Path(env["AILS_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'[providers.mine]\ntype = "openai"\nbase_url = "{up.base_url}"\n'
        'api_key_env = "MINE_TEST_KEY"\n'
    )
    # OPENAI_API_KEY is set, and must never be sent to another provider.
    keyed = {**env, "MINE_TEST_KEY": "mine-secret-key-12345"}
    result = run(keyed, "-m", "mine/chunks:2", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "tok0 tok1 \n"
    assert up.requests[-1].headers["authorization"] == "Bearer mine-secret-key-12345"
    assert up.requests[-1].body["model"] == "chunks:2"

    unset = run(env, "-m", "mine/chunks:2", "hi")
    assert unset.returncode != 0 and "Traceback" not in unset.stderr
    assert "MINE_TEST_KEY" in unset.stderr and "not set" in unset.stderr
    assert up.requests[-1].body["model"] == "chunks:2" and len(up.requests) == 1

    models = run(keyed, "models").stdout
    assert "mine/*" in models
    listing = run(keyed, "providers")
    row = next(line for line in listing.stdout.splitlines() if line.startswith("mine"))
    assert row.split() == ["mine", "yes", "yes", "yes", up.base_url]
    meta = json.loads(run(keyed, "providers", "show", "mine", "--json").stdout)
    assert (meta["name"], meta["type"]) == ("mine", "openai")
    assert meta["key"] == {"source": "MINE_TEST_KEY ([providers.mine])", "value": "min…2345"}
    shown = run(keyed, "config", "show").stdout
    assert "[providers.mine]" in shown and "mine-secret-key-12345" not in shown
    assert 'api_key = "min…2345"  # MINE_TEST_KEY ([providers.mine])' in shown


def test_a_named_provider_needs_a_type(env: dict[str, str]) -> None:
    home = Path(env["AILS_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('[providers.groq]\nbase_url = "http://127.0.0.1:9/v1"\n')
    result = run(env, "-m", "groq/x", "hi")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "[providers.groq] needs type" in result.stderr


# -- errors and exit codes ------------------------------------------------------------------


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("ails: error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""
    return result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "nosuch/model", "hi"], "unknown provider 'nosuch'"),
        (["--bogus", "hi"], "No such option"),
        (["-m", "openai/x", "-o", "temperature=hot", "hi"], "expected a number"),
        (["-m", "openai/x", "-o", "novalue", "hi"], "expected key=value"),
        (["-m", "local/default", "-o", "mirostat=2", "hi"], "argument supplied: 'mirostat'"),
        (["-m", "openai/x"], "give a prompt"),
        (["--cid", "nosuchid", "hi"], "no conversation 'nosuchid'"),
        (["logs", "-n", "-1"], "-1"),
        (["completion", "tcsh"], "tcsh"),
    ],
)
def test_usage_errors_exit_2(env: dict[str, str], args: list[str], message: str) -> None:
    result = run(env, *args)
    assert result.returncode == 2
    assert message in one_line_error(result)


def test_unreachable_upstream_exits_1(env: dict[str, str]) -> None:
    result = run({**env, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}, "-m", "openai/x", "hi")
    assert result.returncode == 1
    assert "cannot reach" in one_line_error(result)


def test_model_the_upstream_does_not_know_exits_1(env: dict[str, str]) -> None:
    result = run(env, "-m", "openai/status:404", "hi")
    assert result.returncode == 1
    assert "HTTP 404" in one_line_error(result)


def test_missing_key_exits_1_with_a_hint(env: dict[str, str]) -> None:
    no_openai = {k: v for k, v in env.items() if not k.startswith("OPENAI_")}
    result = run(no_openai, "-m", "openai/gpt-4o-mini", "hi")
    assert result.returncode == 1
    assert "ails keys set openai" in one_line_error(result)


# -- help, completion, start-up ------------------------------------------------------------------


def test_help_and_version(env: dict[str, str]) -> None:
    result = run(env, "--help")
    assert result.returncode == 0
    for command in ("chat", "logs", "models", "providers", "keys", "config", "cache", "completion"):
        assert command in result.stdout
    # The options every example uses are the default command's: listed here too.
    for option in ("-m, --model MODEL", "-s, --system", "-o, --option KEY=VALUE", "-c, --continue"):
        assert option in result.stdout
    assert run(env, "--version").stdout.startswith("ails, version")


@pytest.mark.parametrize("group", ["config", "keys"])
def test_a_group_alone_prints_its_help(env: dict[str, str], group: str) -> None:
    """Help asked for is not an error: exit 0, the help on stdout, nothing on stderr."""
    result = run(env, group)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(f"Usage: ails {group}")
    assert " path " in result.stdout  # its subcommands are listed
    wrong = run(env, group, "nosuch")
    assert wrong.returncode == 2 and "No such command 'nosuch'" in wrong.stderr


def test_logs_alone_still_lists(env: dict[str, str]) -> None:
    run(env, "-m", "openai/echo", "listed words")
    result = run(env, "logs")
    assert result.returncode == 0, result.stderr
    assert "> listed words" in result.stdout and "Usage" not in result.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script(env: dict[str, str], shell: str) -> None:
    result = run(env, "completion", shell)
    assert result.returncode == 0, result.stderr
    assert "_AILS_COMPLETE" in result.stdout


def test_completion_offers_subcommands(env: dict[str, str]) -> None:
    completing = {
        **env,
        "_AILS_COMPLETE": "bash_complete",
        "COMP_WORDS": "ails lo",
        "COMP_CWORD": "1",
    }
    result = run(completing)
    assert result.returncode == 0, result.stderr
    assert "logs" in result.stdout


def test_cli_import_is_lean() -> None:
    """``ails --help`` must not pay for the HTTP client or the database."""
    code = "import sys, ails.cli; print(sorted({'aiohttp', 'sqlite3'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.local
def test_the_default_model_answers(tmp_path: Path) -> None:
    """The one test of the real embedded model: no -m, no server, no key."""
    env = clean_env(tmp_path / "home", None)
    result = run(env, "-o", "max_tokens=8", "Say hello.", timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert json.loads(run(env, "logs", "--json").stdout)[0]["model"] == "local/default"
