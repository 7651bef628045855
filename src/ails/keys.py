"""The keys file: provider name -> API key, JSON, readable by the user only.

Written atomically: a new file is created with mode 0600 *before* anything is
written to it (``os.open`` with the mode, then ``fchmod`` in case a umask or a
filesystem widened it), filled, synced, and renamed over the old one. So the
key never sits in a file others can read, not even for a moment, and a crash
leaves the old file or the new one, never half of one.

Environment variables override what is stored here (see :mod:`ails.config`).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from ails.errors import ConfigError

FILE_MODE = 0o600
DIR_MODE = 0o700


def load(path: Path) -> dict[str, str]:
    """The stored keys; an absent file holds none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read the keys file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ConfigError(f"the keys file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ConfigError(f"the keys file {path} must map names to strings")
    return data


def save(path: Path, keys: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = (json.dumps(keys, indent=2, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(payload)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def set_key(path: Path, name: str, value: str) -> None:
    keys = load(path)
    keys[name] = value
    save(path, keys)


def remove_key(path: Path, name: str) -> bool:
    """Forget ``name``; False when it was not stored."""
    keys = load(path)
    if name not in keys:
        return False
    del keys[name]
    save(path, keys)
    return True


def too_open(path: Path) -> bool:
    """True when group or others may read or write the file (someone copied it
    around, or made it by hand): the CLI warns about it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(stat.S_IMODE(mode) & 0o077)
