#!/usr/bin/env bash
# Headless Chromium for the chat page's browser tests (tests/test_ui.py): Debian's
# own package, /usr/bin/chromium. Playwright (a pinned test dependency) drives it;
# `playwright install` is never run, it would download a browser build of its own.
# Needs root (or sudo) the first time; does nothing when Chromium is there.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "install-browser: /usr/bin/chromium is missing and this user cannot install it;" \
        "run: apt-get install chromium" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
/usr/bin/chromium --version 2>/dev/null
