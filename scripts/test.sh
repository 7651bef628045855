#!/usr/bin/env bash
# The one test command (README, .ci/run): installs into .venv, then runs lint,
# types, the default suite and the slow (load/soak) target.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[local,test]'
bash scripts/install-browser.sh
bash scripts/install-redis.sh

.venv/bin/ruff check src tests bench scripts
.venv/bin/ruff format --check src tests bench scripts
.venv/bin/mypy

# The slow target (load and soak) first, so that the last summary line is the
# whole default suite's; pytest exits 5 when it selects nothing, not a failure here.
.venv/bin/pytest -q -p no:cacheprovider -m slow || { rc=$?; [ "$rc" -eq 5 ] || exit "$rc"; }
.venv/bin/pytest -q -p no:cacheprovider
