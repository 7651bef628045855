#!/usr/bin/env bash
# Client libraries whose pins conflict with ails' test environment get a virtual
# environment of their own under .clients/ (gitignored), run by the tests as a
# separate interpreter: instructor 1.17.0 needs jiter<0.15, the openai SDK ails
# pins (3.57.0) needs jiter>=0.16. Idempotent: an existing, complete venv is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

install() {  # install NAME REQUIREMENT...
    local dir=".clients/$1"; shift
    local stamp="$dir/.installed"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$*" ]; then
        return
    fi
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    echo "$*" > "$stamp"
}

install instructor instructor==1.17.0 openai==3.3.0
