#!/usr/bin/env bash
# The one test command (README, .ci/run): installs into .venv, then runs lint,
# types, the default suite and the slow (load/soak) target.
set -euo pipefail
if [ "${1-}" = "-h" ] || [ "${1-}" = "--help" ]; then
    cat <<'EOF'
Usage: bash scripts/test.sh

Creates or updates .venv (pip install -e '.[local,test]'), installs chromium and
redis-server when missing (root or sudo), the agent clients into .agents/
(npm, exact pins), then runs ruff, ruff format --check,
mypy, the slow target (pytest -m slow: load, soak, the README run as printed)
and the default suite. Exactly what CI runs (.ci/run). Takes no options.
EOF
    exit 0
fi
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[local,test]'
bash scripts/install-browser.sh
bash scripts/install-redis.sh
bash scripts/install-client-venvs.sh
bash scripts/install-agents.sh

.venv/bin/ruff check src tests bench scripts
.venv/bin/ruff format --check src tests bench scripts
.venv/bin/mypy

# The slow target (load and soak) first, so that the last summary line is the
# whole default suite's; pytest exits 5 when it selects nothing, not a failure here.
.venv/bin/pytest -q -p no:cacheprovider -m slow || { rc=$?; [ "$rc" -eq 5 ] || exit "$rc"; }
.venv/bin/pytest -q -p no:cacheprovider
