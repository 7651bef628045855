"""The CLI's state, tested with plain values: the log (migrations, search, the
on/off flag), the keys file, config parsing and key precedence, ``-o`` parsing."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import click
import pytest

from ails import config, keys, store, store_migrations
from ails.cli._exchange import parse_options
from ails.errors import ConfigError
from ails.store import Exchange, NoSuchConversation, Store


def ex(prompt: str, response: str, cid: str | None = None) -> Exchange:
    return Exchange(model="openai/x", prompt=prompt, response=response, conversation_id=cid)


# -- store ------------------------------------------------------------------------------


def test_migrations_run_once_and_record_the_version(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    with Store(path) as s:
        s.log(ex("hello", "world"))
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(store_migrations.MIGRATIONS)
    db.close()
    with Store(path) as s:  # opening again applies nothing and loses nothing
        assert [e.prompt for e in s.responses()] == ["hello"]
    assert (path.stat().st_mode & 0o777) == 0o600


def test_an_old_database_is_migrated_and_indexed(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    db = sqlite3.connect(path, isolation_level=None)
    store_migrations._m001_initial(db)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO conversations VALUES ('c1', 'n', 'openai/x', '2026-01-01T00:00:00')")
    db.execute(
        "INSERT INTO responses(conversation_id, model, prompt, response, created) "
        "VALUES ('c1', 'openai/x', 'old prompt', 'ancient answer', '2026-01-01T00:00:00')"
    )
    db.close()
    with Store(path) as s:
        assert [e.prompt for e in s.responses(query="ancient")] == ["old prompt"]


def test_search_without_fts5_falls_back_to_like(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_migrations, "fts5_available", lambda db: False)
    with Store(tmp_path / "logs.db") as s:
        s.log(ex("first", "an apple a day"))
        s.log(ex("second", "100% pear_juice"))
        assert not s.has_fts()
        assert [e.prompt for e in s.responses(query="apple")] == ["first"]
        assert [e.prompt for e in s.responses(query="100%")] == ["second"]
        assert s.responses(query="_") == [s.responses(query="pear_juice")[0]]


def test_search_quotes_user_text() -> None:
    assert store.fts_query('it\'s "x" -y') == '"it\'s" """x""" "-y"'


def test_search_ranks_then_orders_by_time(tmp_path: Path) -> None:
    with Store(tmp_path / "logs.db") as s:
        for i in range(5):
            s.log(ex(f"p{i}", "kiwi" if i % 2 == 0 else "other"))
        found = s.responses(query="kiwi", limit=2)
        assert len(found) == 2 and found[0].id is not None and found[0].id < (found[1].id or 0)


def test_conversations_and_prefixes(tmp_path: Path) -> None:
    with Store(tmp_path / "logs.db") as s:
        a = s.log(ex("a1", "r1")).conversation_id
        assert a is not None
        s.log(ex("a2", "r2", cid=a))
        b = s.log(ex("b1", "r3")).conversation_id
        assert s.latest_conversation() == b
        assert s.find_conversation(a) == a
        assert s.find_conversation(a[:20].upper()) == a
        assert [e.prompt for e in s.conversation(a)] == ["a1", "a2"]
        assert store.history_messages(s.conversation(a))[:2] == [
            {"role": "user", "content": "a1"},
            {"role": "assistant", "content": "r1"},
        ]
        with pytest.raises(NoSuchConversation):
            s.find_conversation("zzzz")
        with pytest.raises(NoSuchConversation, match="several"):
            s.find_conversation("0")  # every id of this century starts with 0


def test_logging_flag_and_no_file_until_needed(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    s = Store(path)
    assert s.logging_enabled() and s.latest_conversation() is None and s.responses() == []
    assert not path.exists()  # reading an absent log creates nothing
    s.set_logging(False)
    assert not s.logging_enabled()
    s.close()
    assert not Store(path).logging_enabled()


def test_ids_sort_by_time() -> None:
    ids = [store.new_id() for _ in range(50)]
    assert len(set(ids)) == 50 and all(len(i) == 26 for i in ids)


# -- keys ----------------------------------------------------------------------------------


def test_keys_file_is_0600_even_with_an_open_umask(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "keys.json"
    old = os.umask(0)
    try:
        keys.set_key(path, "openai", "sk-1")
        keys.set_key(path, "other", "sk-2")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert keys.load(path) == {"openai": "sk-1", "other": "sk-2"}
    assert [p.name for p in path.parent.iterdir()] == ["keys.json"]  # no temp file left
    assert not keys.too_open(path)
    path.chmod(0o644)
    assert keys.too_open(path)
    assert keys.remove_key(path, "other") and not keys.remove_key(path, "other")


def test_a_broken_keys_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        keys.load(path)
    path.write_text('{"a": 1}')
    with pytest.raises(ConfigError, match="strings"):
        keys.load(path)


# -- config --------------------------------------------------------------------------------


def test_config_parse_checks_the_shape() -> None:
    s = config.parse(
        {"default_model": "openai/x", "aliases": {"f": "openai/y"}, "providers": {"openai": {}}}
    )
    assert s.default_model == "openai/x" and s.aliases == {"f": "openai/y"}
    for bad in ({"colour": 1}, {"aliases": {"f": 3}}, {"providers": {"openai": "x"}}):
        with pytest.raises(ConfigError):
            config.parse(bad)


def test_paths_follow_ails_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AILS_HOME", str(tmp_path))
    monkeypatch.delenv("AILS_CONFIG", raising=False)
    assert config.db_path() == tmp_path / "logs.db"
    assert config.keys_path() == tmp_path / "keys.json"
    assert config.config_path() == tmp_path / "config.toml"
    monkeypatch.delenv("AILS_HOME")
    assert config.db_path().name == "logs.db" and config.db_path().parent.name == "ails"


def test_key_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "AILS_KEY_OPENAI"):
        monkeypatch.delenv(var, raising=False)
    settings = config.parse({"providers": {"openai": {"api_key": "from-config"}}})
    stored = {"openai": "from-file"}
    assert config.resolve_key("openai", lambda: stored, settings) == ("from-file", "keys file")
    assert config.resolve_key("openai", dict, settings) == (
        "from-config",
        "[providers.openai] api_key",
    )
    monkeypatch.setenv("AILS_KEY_OPENAI", "generic")
    assert config.resolve_key("openai", lambda: stored, settings) == ("generic", "AILS_KEY_OPENAI")
    monkeypatch.setenv("OPENAI_API_KEY", "official")
    assert config.resolve_key("openai", lambda: stored, settings) == ("official", "OPENAI_API_KEY")
    assert config.key_env_names("my-proxy") == ("AILS_KEY_MY_PROXY",)


def test_masking() -> None:
    assert config.mask("sk-abcdefghijklmnop") == "sk-…mnop"
    assert config.mask("short") == "****"
    assert config.masked(
        {"base_url": "u", "headers": {"Authorization": "Bearer abcdefghijkl"}}
    ) == {
        "base_url": "u",
        "headers": {"Authorization": "Bea…ijkl"},
    }


# -- -o options ------------------------------------------------------------------------------


def test_parse_options() -> None:
    assert parse_options(["temperature=0.5", "max_tokens=10", "seed=1", "stop=a", "stop=b"]) == {
        "temperature": 0.5,
        "max_tokens": 10,
        "seed": 1,
        "stop": ["a", "b"],
    }
    assert parse_options(["top_k=40", "mode=fast", 'logit_bias={"1": 2}']) == {
        "top_k": 40,
        "mode": "fast",
        "logit_bias": {"1": 2},
    }
    for bad in (["temperature=hot"], ["max_tokens=1.5"], ["novalue"], ["=1"], ["stream=true"]):
        with pytest.raises(click.BadParameter):
            parse_options(bad)
