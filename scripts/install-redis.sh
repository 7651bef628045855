#!/usr/bin/env bash
# redis-server for the shared-state tests (tests/test_redis.py) and the bench
# (bench/redis_overhead.py): Debian's own package. The tests start their own
# server on a free loopback port; this script never starts or enables one.
# Needs root (or sudo) the first time; does nothing when redis-server is there.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "install-redis: redis-server is missing and this user cannot install it;" \
        "run: apt-get install redis-server" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
# Where an init system runs, the package also starts a system service on port 6379;
# the tests and the bench never use it.
"${sudo[@]}" apt-get install -y -qq --no-install-recommends redis-server >/dev/null
redis-server --version
