"""Any provider is a gateway backend: a provider named in the config file, an
entry-point plugin, the signed provider (in front of another gateway that
verifies the signatures). ``NAME/MODEL`` goes to that backend only; a backend
pointing at the gateway itself is refused at start."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from gateway_proc import Gateway, run_serve
from test_plugins import PLUGIN, install_plugin
from upstream import Upstream

KEY = "named-upstream-key-123"
HELLO = [{"role": "user", "content": "Hello, who are you?"}]


@pytest.fixture(scope="module")
def up() -> Iterator[Upstream]:
    with Upstream(api_key=KEY, models=["test-model", "chunks:2"]) as u:
        yield u


@pytest.fixture
def upr(up: Upstream) -> Upstream:
    up.reset()
    return up


def sdk(g: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=g.base_url, api_key="unused", max_retries=0)


def write_config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return {"AILS_CONFIG": str(path)}


def test_a_named_provider_is_a_backend_with_its_own_key(upr: Upstream, tmp_path: Path) -> None:
    env = write_config(
        tmp_path,
        f"""
[providers.mine]
type = "openai"
base_url = "{upr.base_url}"
api_key_env = "MINE_BACKEND_KEY"
headers = {{ "x-team" = "blue" }}
models = ["test-model"]
retries = 0
max_connections = 4
""",
    )
    # OPENAI_API_KEY is set and must not be what the backend sends.
    env |= {"MINE_BACKEND_KEY": KEY, "OPENAI_API_KEY": "sk-not-for-this-server"}
    with Gateway(["--backend", "mine"], env=env) as g:
        owners = {m.id: m.owned_by for m in sdk(g).models.list()}
        # The allow-list hides what the upstream also lists.
        assert owners == {"test-model": "mine", "mine/test-model": "mine"}
        for model in ("test-model", "mine/test-model"):
            reply = sdk(g).chat.completions.create(model=model, messages=HELLO)
            assert reply.choices[0].message.content == "Hello, who are you? "
            sent = upr.requests[-1]
            assert sent.body["model"] == "test-model"
            assert sent.headers["authorization"] == f"Bearer {KEY}"
            assert sent.headers["x-team"] == "blue"
        with sdk(g).chat.completions.create(
            model="mine/test-model", messages=HELLO, stream=True
        ) as stream:
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "Hello, who are you? "

    unset = {k: v for k, v in env.items() if k != "MINE_BACKEND_KEY"}
    result = run_serve(["--port", "0", "--backend", "mine"], env=unset)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "MINE_BACKEND_KEY" in result.stderr and "not set" in result.stderr


def test_name_slash_model_goes_to_that_backend_only(upr: Upstream, tmp_path: Path) -> None:
    env = write_config(
        tmp_path,
        f"""
[providers.first]
type = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key = "first-key-0001"

[providers.second]
type = "openai"
base_url = "{upr.base_url}"
api_key = "{KEY}"
""",
    )
    with Gateway(["--backend", "first", "--backend", "second"], env=env) as g:
        owners = {m.id: m.owned_by for m in sdk(g).models.list()}
        assert owners["test-model"] == "second" and "first/test-model" not in owners
        # first is down (its list never fetched: 503); no fallback to second.
        with pytest.raises(openai.InternalServerError) as info:
            sdk(g).chat.completions.create(model="first/test-model", messages=HELLO)
        assert info.value.status_code == 503 and not upr.requests
        reply = sdk(g).chat.completions.create(model="second/chunks:2", messages=HELLO)
        assert reply.choices[0].message.content == "tok0 tok1 "


def test_a_missing_type_or_an_unknown_backend_stops_the_start(tmp_path: Path) -> None:
    env = write_config(tmp_path, '[providers.groq]\nbase_url = "http://127.0.0.1:9/v1"\n')
    result = run_serve(["--port", "0", "--backend", "groq"], env=env)
    assert result.returncode == 2 and "[providers.groq] needs type" in result.stderr
    env = write_config(tmp_path, "")
    result = run_serve(["--port", "0", "--backend", "nosuch"], env=env)
    assert result.returncode == 2 and "--backend nosuch" in result.stderr


def test_an_entry_point_plugin_is_a_backend(tmp_path: Path) -> None:
    pythonpath = install_plugin(tmp_path / "site", PLUGIN)
    env = {**write_config(tmp_path, ""), "PYTHONPATH": pythonpath}
    with Gateway(["--backend", "reverse"], env=env) as g:
        owners = {m.id: m.owned_by for m in sdk(g).models.list()}
        assert owners == {"r1": "reverse", "reverse/r1": "reverse"}
        msgs = [{"role": "user", "content": "hello plugin"}]
        reply = sdk(g).chat.completions.create(model="reverse/r1", messages=msgs)
        assert reply.choices[0].message.content == "nigulp olleh"
        with sdk(g).chat.completions.create(model="r1", messages=msgs, stream=True) as stream:
            pieces = [c.choices[0].delta.content for c in stream if c.choices]
        assert "".join(p or "" for p in pieces) == "nigulp olleh"


def test_the_signed_provider_is_a_backend_in_front_of_a_verifying_gateway(
    upr: Upstream, tmp_path: Path
) -> None:
    front_env = {"AILS_CONFIG": str(tmp_path / "none.toml"), "INNER_UP_KEY": KEY}
    (tmp_path / "inner.toml").write_text(
        f"""
[serve]
allow_signed = true
[serve.aliases]
"gpt-3.5-turbo" = "test-model"
[[serve.upstreams]]
url = "{upr.base_url}"
key_env = "INNER_UP_KEY"
"""
    )
    inner_args = ["--config", str(tmp_path / "inner.toml"), "--api-key", "inner-client-key-1"]
    with Gateway(inner_args, env=front_env) as inner:
        env = write_config(
            tmp_path, f'[providers.seed]\ntype = "signed"\nbase_url = "{inner.base_url}"\n'
        )
        with Gateway(["--backend", "seed"], env=env) as outer:
            owners = {m.id: m.owned_by for m in sdk(outer).models.list()}
            assert owners == {"gpt-3.5-turbo": "seed", "seed/gpt-3.5-turbo": "seed"}
            with sdk(outer).chat.completions.create(
                model="seed/gpt-3.5-turbo", messages=HELLO, stream=True
            ) as stream:
                text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert text == "Hello, who are you? "
            # The inner gateway verified a signature (no key was sent) and
            # passed the request on without the signed fields.
            sent = upr.requests[-1].body
            assert sent["model"] == "test-model" and not {"d", "t", "s"} & set(sent)
            reply = sdk(outer).chat.completions.create(model="gpt-3.5-turbo", messages=HELLO)
            assert reply.choices[0].message.content == "Hello, who are you? "


def test_a_backend_pointing_at_the_gateway_itself_is_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = write_config(tmp_path, "")
    result = run_serve(["--port", str(port), "--upstream", f"http://localhost:{port}/v1"], env=env)
    assert result.returncode == 2 and "points at this gateway itself" in result.stderr


# -- the worked example of a new endpoint (docs/architecture.md) -------------------------


def test_embeddings_pass_through_to_a_backend_that_serves_them(
    upr: Upstream, tmp_path: Path
) -> None:
    env = write_config(tmp_path, "")
    args = ["--upstream", upr.base_url, "--upstream-key", KEY, "--max-retries", "0"]
    with Gateway(args, env=env) as g:
        client = sdk(g)
        got = client.embeddings.with_raw_response.create(
            model="upstream1/test-model", input=["one", "three"]
        )
        vectors = got.parse()
        assert [d.embedding for d in vectors.data] == [[3.0, 0.0], [5.0, 1.0]]
        assert json.loads(got.content)["x_vendor"] == "kept"  # the backend's own bytes
        sent = upr.requests[-1]
        assert sent.path == "/v1/embeddings" and sent.body["model"] == "test-model"
        assert sent.headers["authorization"] == f"Bearer {KEY}"
        assert got.headers["x-request-id"]

        with pytest.raises(openai.BadRequestError) as bad:
            client.embeddings.create(model="test-model", input=[])
        assert bad.value.body["param"] == "input"  # type: ignore[index]
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="nobody-serves-this", input="x")


def test_embeddings_from_a_backend_without_them_is_a_clear_error(tmp_path: Path) -> None:
    pythonpath = install_plugin(tmp_path / "site", PLUGIN)
    env = {**write_config(tmp_path, ""), "PYTHONPATH": pythonpath}
    with Gateway(["--backend", "reverse"], env=env) as g:
        with pytest.raises(openai.NotFoundError) as info:
            sdk(g).embeddings.create(model="r1", input="x")
        assert "does not serve embeddings" in info.value.message


def test_the_event_loop_is_uvloop_unless_asked_otherwise(upr: Upstream, tmp_path: Path) -> None:
    env = write_config(tmp_path, "")
    for args, loop in (([], "uvloop"), (["--loop", "asyncio"], "asyncio")):
        with Gateway(["--upstream", upr.base_url, "--upstream-key", KEY, *args], env=env) as g:
            assert f"(event loop: {loop})" in g.log
            reply = sdk(g).chat.completions.create(model="test-model", messages=HELLO)
            assert reply.choices[0].message.content == "Hello, who are you? "
    result = run_serve(["--port", "0", "--loop", "tokio"], env=env)
    assert result.returncode == 2 and "tokio" in result.stderr
