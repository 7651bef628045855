"""Running the installed ``ails`` command in tests, as a user would.

Every run gets a private ``AILS_HOME`` (config, logs, keys), the test upstream
as ``OPENAI_BASE_URL`` and nothing from the developer's own environment that
could change the outcome (``AILS_*``, ``OPENAI_*``, ``ANTHROPIC_*``, ``NO_COLOR``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

_BIN = Path(sys.executable).parent
AILS = shutil.which("ails", path=str(_BIN)) or shutil.which("ails") or str(_BIN / "ails")


def clean_env(home: Path, base_url: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AILS_", "OPENAI_", "ANTHROPIC_"))
        and k not in ("NO_COLOR", "PYTHONWARNINGS")
    }
    env["AILS_HOME"] = str(home)
    env["AILS_DISABLE_PLUGINS"] = "1"
    env["TERM"] = "xterm"
    if base_url is not None:
        env["OPENAI_BASE_URL"] = base_url
        env["OPENAI_API_KEY"] = "test"
    return env


def run(
    env: dict[str, str], *args: str, input: str = "", timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``ails ARGS`` with ``input`` on a pipe (never the terminal)."""
    return subprocess.run(
        [AILS, *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
