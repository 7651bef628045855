"""The conversation log's schema, as numbered migrations.

:data:`MIGRATIONS` is a list of functions, the database's ``PRAGMA
user_version`` says how many have run, and each runs in its own ``BEGIN
IMMEDIATE`` transaction, so two ``ails`` processes starting at once do not both
apply one. A migration is never edited once released; a change is a new
function at the end of the list.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable


def fts5_available(db: sqlite3.Connection) -> bool:
    try:
        db.execute("CREATE VIRTUAL TABLE temp._ails_fts_probe USING fts5(x)")
    except sqlite3.OperationalError:
        return False
    db.execute("DROP TABLE temp._ails_fts_probe")
    return True


# -- migrations ---------------------------------------------------------------
# Plain statements, one execute each: executescript() would COMMIT the
# transaction the runner opened.


def _m001_initial(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY,
            name TEXT,
            model TEXT,
            created TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE responses (
            id INTEGER PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations(id),
            model TEXT NOT NULL,
            prompt TEXT NOT NULL,
            system TEXT,
            options TEXT NOT NULL DEFAULT '{}',
            response TEXT NOT NULL,
            finish_reason TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            duration_ms INTEGER,
            created TEXT NOT NULL
        )"""
    )
    db.execute("CREATE INDEX responses_by_conversation ON responses(conversation_id, id)")
    db.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


def _m002_search(db: sqlite3.Connection) -> None:
    if not fts5_available(db):
        return  # searched with LIKE instead (module docstring)
    db.execute(
        "CREATE VIRTUAL TABLE responses_fts USING fts5("
        "prompt, response, content='responses', content_rowid='id')"
    )
    # External-content FTS: the triggers keep the index in step with the table.
    db.execute(
        """CREATE TRIGGER responses_ai AFTER INSERT ON responses BEGIN
            INSERT INTO responses_fts(rowid, prompt, response)
            VALUES (new.id, new.prompt, new.response);
        END"""
    )
    db.execute(
        """CREATE TRIGGER responses_ad AFTER DELETE ON responses BEGIN
            INSERT INTO responses_fts(responses_fts, rowid, prompt, response)
            VALUES ('delete', old.id, old.prompt, old.response);
        END"""
    )
    db.execute(
        """CREATE TRIGGER responses_au AFTER UPDATE ON responses BEGIN
            INSERT INTO responses_fts(responses_fts, rowid, prompt, response)
            VALUES ('delete', old.id, old.prompt, old.response);
            INSERT INTO responses_fts(rowid, prompt, response)
            VALUES (new.id, new.prompt, new.response);
        END"""
    )
    db.execute("INSERT INTO responses_fts(responses_fts) VALUES ('rebuild')")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m001_initial, _m002_search]


def migrate(db: sqlite3.Connection) -> int:
    """Apply the migrations this database lacks; return its schema version."""
    for version, step in enumerate(MIGRATIONS, start=1):
        if _version(db) >= version:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            if _version(db) < version:  # another process may have got here first
                step(db)
                db.execute(f"PRAGMA user_version = {version}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return _version(db)


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])
