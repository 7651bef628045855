"""Which GGUF file to load: the one the user names, else the bundled weights.

A user's file (``model_path`` or ``AILS_LOCAL_MODEL``) is not hash-checked: it is
their choice. It is vetted instead, before the runtime sees it, so that a wrong
file gives a sentence rather than a crash or nonsense: it must exist, start with
the GGUF magic, and carry a chat template.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ails.errors import ConfigError
from ails.local.gguf import GGUF_MAGIC, has_chat_template, read_magic
from ails.local.weights import Progress, bundled_model, stderr_progress


@dataclass(frozen=True)
class ModelFile:
    """A GGUF file ready to load. ``bundled`` means the hash-verified default weights."""

    path: Path
    bundled: bool


def resolve_model(model_path: str | None, progress: Progress = stderr_progress) -> ModelFile:
    """The explicit setting wins, then ``AILS_LOCAL_MODEL``, then the bundled weights."""
    if model_path:
        return user_model(model_path, "the local provider's model_path setting")
    env = os.environ.get("AILS_LOCAL_MODEL")
    if env:
        return user_model(env, "AILS_LOCAL_MODEL")
    return ModelFile(bundled_model(progress), bundled=True)


def user_model(path_text: str, origin: str) -> ModelFile:
    """Vet a user's GGUF file; ``origin`` names the setting it came from."""
    path = Path(path_text).expanduser()
    try:
        magic = read_magic(path)
    except IsADirectoryError:
        raise ConfigError(f"{origin} points at {path}, a folder; name a .gguf file") from None
    except FileNotFoundError:
        raise ConfigError(f"{origin} points at {path}, which does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{origin} points at {path}, which cannot be read ({exc})") from exc
    if magic != GGUF_MAGIC:
        raise ConfigError(
            f"{origin} points at {path}, which is not a GGUF model file (it starts with "
            f"{magic!r}; a GGUF file starts with b'GGUF')",
            code="local_model_not_gguf",
        )
    # llama.cpp would fall back to a generic template and a base model would answer
    # nonsense; None (header unreadable) is left for the runtime to judge.
    if has_chat_template(path) is False:
        raise ConfigError(
            f"{path} has no chat template (no tokenizer.chat_template in its header): it "
            "is probably a base model, not a chat model; use an instruct/chat GGUF",
            code="local_model_no_template",
        )
    return ModelFile(path.resolve(), bundled=False)
