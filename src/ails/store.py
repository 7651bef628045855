"""The conversation log: every exchange of the CLI, in one SQLite file.

Schema changes are numbered migrations (:mod:`ails.store_migrations`).

Full-text search uses SQLite's FTS5 over prompts and answers. A Python whose
SQLite lacks FTS5 gets no index and :meth:`Store.responses` falls back to
``LIKE`` (same results for whole words, slower, no ranking).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from ails.store_migrations import migrate

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case


def new_id() -> str:
    """A ULID-shaped id: 48 bits of milliseconds then 80 random bits, 26
    characters that sort by creation time."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# -- records ------------------------------------------------------------------


@dataclass
class Exchange:
    """One prompt and its answer, as logged."""

    model: str
    prompt: str
    response: str
    conversation_id: str | None = None
    system: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    duration_ms: int | None = None
    created: str = ""
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "model": self.model,
            "prompt": self.prompt,
            "system": self.system,
            "options": self.options,
            "response": self.response,
            "finish_reason": self.finish_reason,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            },
            "duration_ms": self.duration_ms,
            "created": self.created,
        }


class NoSuchConversation(LookupError):
    pass


_FIELDS = (
    "conversation_id",
    "model",
    "prompt",
    "system",
    "options",
    "response",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "duration_ms",
    "created",
)
_COLUMNS = ", ".join(("id", *_FIELDS))


def _exchange(row: sqlite3.Row) -> Exchange:
    try:
        options = json.loads(row["options"] or "{}")
    except ValueError:
        options = {}
    return Exchange(
        id=row["id"],
        conversation_id=row["conversation_id"],
        model=row["model"],
        prompt=row["prompt"],
        system=row["system"],
        options=options,
        response=row["response"],
        finish_reason=row["finish_reason"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        duration_ms=row["duration_ms"],
        created=row["created"],
    )


def fts_query(text: str) -> str:
    """Words as FTS5 phrases, all required: ``it's -x`` must not be parsed as
    FTS5 syntax (a bare ``-`` or ``"`` is a syntax error there)."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in text.split())


class Store:
    """The log at ``path``, opened (and migrated) on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Prompts are private: the file (and so its -wal/-shm companions,
            # which SQLite creates with the same mode) is for the user alone.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            # Autocommit mode: transactions are explicit, which the migrations need.
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.row_factory = sqlite3.Row
            try:
                # WAL: a chat session writing does not block `ails logs` reading.
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA foreign_keys = ON")
                migrate(db)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- logging on/off -------------------------------------------------------

    def logging_enabled(self) -> bool:
        if self._db is None and not self.path.exists():
            return True  # nothing was ever switched off; do not create the file to say so
        row = self.db.execute("SELECT value FROM state WHERE key = 'logging'").fetchone()
        return row is None or row[0] != "off"

    def set_logging(self, enabled: bool) -> None:
        self.db.execute(
            "INSERT INTO state(key, value) VALUES ('logging', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            ("on" if enabled else "off",),
        )

    # -- writing --------------------------------------------------------------

    def log(self, exchange: Exchange) -> Exchange:
        """Store one exchange, starting a conversation when it has none; the
        exchange comes back with its ``id``, ``conversation_id`` and ``created``."""
        db = self.db
        exchange.created = exchange.created or _now()
        db.execute("BEGIN IMMEDIATE")
        try:
            if exchange.conversation_id is None:
                exchange.conversation_id = new_id()
            db.execute(
                "INSERT OR IGNORE INTO conversations(id, name, model, created) VALUES (?,?,?,?)",
                (
                    exchange.conversation_id,
                    " ".join(exchange.prompt.split())[:60],
                    exchange.model,
                    exchange.created,
                ),
            )
            cur = db.execute(
                f"INSERT INTO responses({', '.join(_FIELDS)}) "
                f"VALUES ({', '.join('?' * len(_FIELDS))})",
                (
                    exchange.conversation_id,
                    exchange.model,
                    exchange.prompt,
                    exchange.system,
                    json.dumps(exchange.options, sort_keys=True),
                    exchange.response,
                    exchange.finish_reason,
                    exchange.prompt_tokens,
                    exchange.completion_tokens,
                    exchange.duration_ms,
                    exchange.created,
                ),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        exchange.id = cur.lastrowid
        return exchange

    # -- reading --------------------------------------------------------------

    def latest_conversation(self) -> str | None:
        if self._db is None and not self.path.exists():
            return None
        row = self.db.execute(
            "SELECT conversation_id FROM responses ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else str(row[0])

    def find_conversation(self, ref: str) -> str:
        """The conversation whose id is ``ref`` or starts with it (unique)."""
        if self._db is None and not self.path.exists():
            raise NoSuchConversation(f"no conversation {ref!r}: nothing is logged yet")
        pattern = ref.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self.db.execute(
            "SELECT id FROM conversations WHERE id = ? OR id LIKE ? ESCAPE '\\' LIMIT 3",
            (ref.lower(), pattern + "%"),
        ).fetchall()
        ids = {str(r[0]) for r in rows}
        if ref.lower() in ids:
            return ref.lower()
        if len(ids) == 1:
            return ids.pop()
        if not ids:
            raise NoSuchConversation(f"no conversation {ref!r} (see: ails logs)")
        raise NoSuchConversation(f"{ref!r} matches several conversations; give more of the id")

    def conversation(self, conversation_id: str) -> list[Exchange]:
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM responses WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        ).fetchall()
        return [_exchange(r) for r in rows]

    def responses(
        self,
        *,
        limit: int | None = 10,
        query: str | None = None,
        conversation_id: str | None = None,
    ) -> list[Exchange]:
        """The latest ``limit`` exchanges (all with ``None``), oldest first; with
        ``query``, the best ``limit`` matches of a full-text search, oldest first."""
        if self._db is None and not self.path.exists():
            return []
        where: list[str] = []
        args: list[Any] = []
        order = "r.id DESC"
        table = "responses r"
        if conversation_id is not None:
            where.append("r.conversation_id = ?")
            args.append(conversation_id)
        if query and query.split():
            if self.has_fts():
                table = "responses_fts f JOIN responses r ON r.id = f.rowid"
                where.append("responses_fts MATCH ?")
                args.append(fts_query(query))
                order = "f.rank, r.id DESC"
            else:
                for word in query.split():
                    like = (
                        "%"
                        + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                        + "%"
                    )
                    where.append("(r.prompt LIKE ? ESCAPE '\\' OR r.response LIKE ? ESCAPE '\\')")
                    args += [like, like]
        columns = ", ".join(f"r.{c}" for c in ("id", *_FIELDS))
        sql = f"SELECT {columns} FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        rows = self.db.execute(sql, args).fetchall()
        return sorted((_exchange(r) for r in rows), key=lambda e: e.id or 0)

    def has_fts(self) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'responses_fts'"
        ).fetchone()
        return row is not None

    def counts(self) -> tuple[int, int]:
        """(conversations, exchanges) logged."""
        if self._db is None and not self.path.exists():
            return 0, 0
        conversations = self.db.execute("SELECT count(*) FROM conversations").fetchone()[0]
        responses = self.db.execute("SELECT count(*) FROM responses").fetchone()[0]
        return int(conversations), int(responses)


def history_messages(exchanges: list[Exchange]) -> list[dict[str, Any]]:
    """The exchanges of a conversation as chat messages (user, assistant, ...),
    system prompts left out: the caller decides which one applies."""
    messages: list[dict[str, Any]] = []
    for ex in exchanges:
        messages.append({"role": "user", "content": ex.prompt})
        messages.append({"role": "assistant", "content": ex.response})
    return messages
