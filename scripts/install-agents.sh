#!/usr/bin/env bash
# The agent clients the slow target runs against `ails serve` (tests/test_agents.py):
# Claude Code and Codex CLI, from npm, exact pins, into .agents/ (gitignored) with
# the machine's own Node and npm; never a global install. Claude Code 2.1.328 is the
# last release that runs on Node 20 (later ones ask for Node 22). Idempotent: a
# complete install with the same pins is kept, so a second run costs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PINS="@anthropic-ai/claude-code@2.1.328 @openai/codex@0.169.0"
dir=".agents"
stamp="$dir/.installed"

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "install-agents: node and npm are needed (Node 20 or later);" \
        "run: apt-get install nodejs npm" >&2
    exit 1
fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$PINS" ] \
    && [ -x "$dir/node_modules/.bin/claude" ] && [ -x "$dir/node_modules/.bin/codex" ]; then
    exit 0
fi
rm -rf "$dir"
mkdir -p "$dir"
# --prefix keeps everything under .agents/; no audit, fund or update notices (no extra traffic).
# shellcheck disable=SC2086
npm install --prefix "$dir" --no-audit --no-fund --no-update-notifier --loglevel=error \
    --save-exact $PINS >/dev/null
"$dir/node_modules/.bin/claude" --version
"$dir/node_modules/.bin/codex" --version
echo "$PINS" > "$stamp"
