"""The gateway fuzzed from its own ``/openapi.json`` by schemathesis.

A real ``ails serve`` with an API key, in front of the test upstream; the
``schemathesis run`` command generates requests from the document the gateway
serves (valid ones, and invalid ones for every constraint it states), sends
them with the key, and runs every check it has plus ``dialect_shaped``
(tests/schemathesis_hooks.py), on every endpoint of the three APIs (OpenAI's
chat and text completions, embeddings, Responses; Anthropic's Messages):

* no 5xx, and an answer within 5 s (no hang);
* every status, content type, header and body is one the document declares;
* every request the document calls valid is accepted (or 401/404/429), every
  invalid one refused; a missing key is refused;
* every error is in its API's shape (an OpenAI error object; Anthropic's
  ``{"type": "error", ...}`` on /v1/messages), every 200 an answer or an event
  stream ending as its clients expect (``[DONE]`` for OpenAI's completions,
  ``message_stop`` for Messages, ``response.completed`` for Responses).

The run is bounded (``FUZZ_EXAMPLES`` cases per operation, a fixed seed so that
CI is repeatable; ``AILS_FUZZ_EXAMPLES`` and ``AILS_FUZZ_SEED`` change them for
a deeper hunt) and the gateway's log must hold no traceback and no 500
afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis  # noqa: F401 - fail at once when the test extra is missing

from gateway_proc import Gateway
from upstream import Upstream

HERE = Path(__file__).resolve().parent
KEY = "fuzz-client-key-7f3a"
#: Per operation (12 paths, 13 operations, 9 with inputs): about 1,900 cases
#: with the coverage phase's, ~40 s here on a loaded 2-core machine.
FUZZ_EXAMPLES = int(os.environ.get("AILS_FUZZ_EXAMPLES", "40"))
FUZZ_SEED = int(os.environ.get("AILS_FUZZ_SEED", "20261126"))
TIME_LIMIT_S = 200
#: A refusal of a request the document calls invalid: its own statuses, 413 for
#: a body over --max-body-bytes among them (schemathesis' default list lacks
#: 413, and counts a 5xx as a refusal: not_a_server_error forbids those).
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "413", "415", "421", "429"]
"""


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    with Upstream(models=["test-model"]) as up:
        args = [
            "--upstream", up.base_url,
            "--api-key", KEY,
            "--max-retries", "0",
            "--idle-timeout", "2",
            "--timeout", "5",
            "--max-body-bytes", "262144",
        ]  # fmt: skip
        with Gateway(args) as g:
            yield g


@pytest.mark.timeout(TIME_LIMIT_S + 60)
def test_schemathesis_finds_nothing(gateway: Gateway, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{gateway.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {KEY}",
        "--checks",
        "all",
        "--max-examples",
        str(FUZZ_EXAMPLES),
        "--seed",
        str(FUZZ_SEED),
        "--workers",
        "2",
        "--max-response-time",
        "5",
        "--request-timeout",
        "10",
        "--continue-on-failure",
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    started = time.monotonic()
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=env,
        timeout=TIME_LIMIT_S,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,  # where it keeps its example database
    )
    elapsed = time.monotonic() - started
    report = done.stdout[-20000:] + done.stderr[-5000:]
    assert done.returncode == 0, report
    assert re.search(r"\d+ generated", done.stdout), report
    print(done.stdout[-600:], f"({elapsed:.1f} s)")
    # Nothing went wrong inside either: no traceback, no 500.
    assert "Traceback" not in gateway.log
    statuses = re.findall(r" (\d{3}) [0-9.]+ms rid=", gateway.log)
    assert statuses and "500" not in statuses
    assert KEY not in gateway.log
