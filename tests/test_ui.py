"""The chat page of ``ails serve``, driven in headless Chromium.

The real CLI runs the real gateway (``tests/ui_gateway.py``) in front of the
test upstream (``tests/upstream.py``), whose model names pick what it answers:
``slow:N:MS`` streams visibly, ``endless`` runs until the client goes away, a
plain name echoes the words of the question. Chromium is Debian's
(``/usr/bin/chromium``, see ``scripts/install-browser.sh``), driven by
Playwright's sync API; no browser is downloaded.

The route tests first need no browser; they run before the browser starts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from ails.server.ui import CONTENT_SECURITY_POLICY, add_ui_routes
from ui_gateway import GatewayProcess
from upstream import Upstream

CHROMIUM = os.environ.get("AILS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MODELS = [
    "test-model",
    "slow:8:150",
    "endless",
    "chunks:3",
    "midstream_error:3",
    "status:429:retry-after=7",
    "status:502",
]
STATIC = Path(__file__).resolve().parents[1] / "src" / "ails" / "server" / "static"

# Names of the page's elements, as the tests read them.
ANSWER = ".msg.assistant .content"
ERROR = ".msg.error .content"


def _need_browser() -> Any:
    """Playwright's sync API; the test command installs it and Chromium, so a
    missing one is a failure, not a skip."""
    reason = None
    try:
        from playwright import sync_api
    except ImportError:
        reason = "playwright is not installed (pip install '.[test]')"
    if reason is None and not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        reason = f"no Chromium at {CHROMIUM} (bash scripts/install-browser.sh)"
    if reason is not None:
        pytest.fail(reason)
    return sync_api


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def up() -> Iterator[Upstream]:
    with Upstream(models=MODELS) as upstream:
        yield upstream


def _gateway(up: Upstream, *extra: str) -> Iterator[GatewayProcess]:
    # No retries: a scripted 429 or 502 must reach the page at once.
    args = ["--upstream", up.base_url, "--max-retries", "0", "--no-access-log", *extra]
    with GatewayProcess(args) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def gateway(up: Upstream) -> Iterator[GatewayProcess]:
    yield from _gateway(up)


@pytest.fixture(scope="module")
def keyed_gateway(up: Upstream) -> Iterator[GatewayProcess]:
    yield from _gateway(up, "--api-key", "right")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = _need_browser()
    # Module scope and the sync API: Playwright's own loop lives only while this
    # module's tests (all synchronous) run, apart from pytest-asyncio's loops.
    with sync_api.sync_playwright() as pw, tempfile.TemporaryDirectory() as downloads:
        # launch() gives every run a fresh, temporary profile (user-data-dir).
        b = pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, downloads_path=downloads
        )
        try:
            yield b
        finally:
            b.close()


class Page:
    """A page of a fresh browser context, and what it did that a test must check."""

    def __init__(self, browser: Any, viewport: dict[str, int]) -> None:
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.dialogs: list[str] = []
        self.errors: list[str] = []

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        def on_console(msg: Any) -> None:
            # An HTTP error the page expects (401, 429...) is logged as a failed
            # resource; anything else logged as an error (a CSP refusal, an
            # exception) is a bug.
            if msg.type == "error" and "Failed to load resource" not in msg.text:
                self.errors.append(msg.text)

        self.page.on("dialog", on_dialog)
        self.page.on("console", on_console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def open(self, gateway: GatewayProcess) -> Any:
        self.page.goto(gateway.url)
        self.wait_for_models()
        return self.page

    def wait_for_models(self) -> None:
        self.page.wait_for_function("() => document.querySelectorAll('#model option').length > 1")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any, up: Upstream) -> Iterator[Page]:
    up.reset()
    p = Page(browser, {"width": 1100, "height": 760})
    yield p
    try:
        assert p.errors == [], p.errors
        assert p.dialogs == [], p.dialogs
    finally:
        p.close()


def ask(page: Any, text: str, model: str | None = None) -> None:
    if model is not None:
        page.select_option("#model", model)
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def wait_idle(page: Any) -> None:
    """Until no answer streams (the Send button is back)."""
    page.wait_for_selector("#send", state="visible")
    page.wait_for_selector(".msg.streaming", state="detached")


def last_answer(page: Any) -> Any:
    return page.locator(ANSWER).last


# ---------------------------------------------------------------------- routes, no browser


async def _serve_ui() -> tuple[web.AppRunner, str]:
    app = web.Application()
    add_ui_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


async def test_routes_headers_and_caching() -> None:
    runner, base = await _serve_ui()
    try:
        async with ClientSession() as s:
            async with s.get(f"{base}/") as r:
                assert r.status == 200
                assert r.headers["Content-Type"] == "text/html; charset=utf-8"
                assert r.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                assert r.headers["Cache-Control"] == "no-cache"
                etag = r.headers["ETag"]
                assert '<textarea id="prompt"' in await r.text()
            async with s.get(f"{base}/", headers={"If-None-Match": etag}) as r:
                assert r.status == 304
                assert await r.read() == b""
            async with s.head(f"{base}/") as r:
                assert r.status == 200
            types = {
                "app.js": "text/javascript; charset=utf-8",
                "app.css": "text/css; charset=utf-8",
                "marked.umd.js": "text/javascript; charset=utf-8",
                "purify.min.js": "text/javascript; charset=utf-8",
                "favicon.svg": "image/svg+xml",
                "marked.LICENSE.txt": "text/plain; charset=utf-8",
            }
            for name, ctype in types.items():
                async with s.get(f"{base}/static/{name}") as r:
                    assert r.status == 200, name
                    assert r.headers["Content-Type"] == ctype
                    assert await r.read() == (STATIC / name).read_bytes()
            for bad in ("nope.js", "..%2Fui.py", "%2e%2e%2fui.py", "", "../ui.py"):
                async with s.get(f"{base}/static/{bad}") as r:
                    assert r.status == 404, bad
    finally:
        await runner.cleanup()


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.inline_scripts = 0
        self.handlers: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.handlers += [k for k in a if k.startswith("on")]
        if "style" in a:
            self.handlers.append("style")
        for key in ("src", "href"):
            if a.get(key):
                self.refs.append(a[key] or "")
        self._in_script = tag == "script" and "src" not in a

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def test_page_is_self_contained_and_csp_clean() -> None:
    refs = _Refs()
    refs.feed((STATIC / "index.html").read_text(encoding="utf-8"))
    assert refs.inline_scripts == 0
    assert refs.handlers == []  # no onclick=..., no style=... under the CSP
    assert refs.refs
    for ref in refs.refs:
        assert not re.match(r"^[a-z]+:|^//", ref), f"not same-origin: {ref}"
        assert ref.startswith("static/"), ref
        assert (STATIC / ref.removeprefix("static/")).is_file(), ref


def test_vendored_files_match_their_record() -> None:
    record = (STATIC / "VENDORED.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([\w.-]+)` \|.*\| `([0-9a-f]{64})` \|$", record, re.M)
    names = {name for name, _ in rows}
    assert {"marked.umd.js", "purify.min.js"} <= names
    for name, digest in rows:
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, name
    for license_file in ("marked.LICENSE.txt", "purify.LICENSE.txt", "purify.LICENSE-MPL.txt"):
        assert (STATIC / license_file).stat().st_size > 500


def test_no_ui_flag_turns_the_page_off(up: Upstream) -> None:
    for extra, expected in (([], 200), (["--no-ui"], 404)):
        with GatewayProcess(["--upstream", up.base_url, "--no-access-log", *extra]) as gw:
            try:
                with urllib.request.urlopen(gw.url, timeout=5) as resp:
                    status = resp.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            assert status == expected, extra


# ---------------------------------------------------------------------- browser tests


@pytest.mark.ui
def test_answer_streams_in(tab: Page, gateway: GatewayProcess, up: Upstream) -> None:
    page = tab.open(gateway)
    # Record every text the answer shows, as the page renders it.
    page.evaluate(
        """() => {
          window.__seen = [];
          new MutationObserver(() => {
            const answers = document.querySelectorAll('.msg.assistant .content');
            const text = answers.length ? answers[answers.length - 1].textContent : '';
            if (text && window.__seen[window.__seen.length - 1] !== text) window.__seen.push(text);
          }).observe(document.getElementById('messages'),
                     {childList: true, subtree: true, characterData: true});
        }"""
    )
    ask(page, "Count for me, please", model="slow:8:150")
    assert page.input_value("#prompt") == ""  # Enter sent it
    page.wait_for_selector("#stop", state="visible")
    wait_idle(page)
    final = " ".join(f"tok{i}" for i in range(8))
    assert last_answer(page).text_content().strip() == final
    seen = [s.strip() for s in page.evaluate("window.__seen")]
    intermediate = [s for s in seen if s and s != final]
    assert len(intermediate) >= 2, seen
    # The answer grew: each state is a prefix of the next.
    assert all(b.startswith(a) for a, b in itertools.pairwise(seen)), seen
    sent = up.requests[-1].body
    assert sent["stream"] is True
    assert sent["messages"] == [{"role": "user", "content": "Count for me, please"}]


@pytest.mark.ui
def test_stop_ends_generation_on_the_server(
    tab: Page, gateway: GatewayProcess, up: Upstream
) -> None:
    page = tab.open(gateway)
    ask(page, "Go on forever", model="endless")
    page.wait_for_function(
        "sel => { const a = document.querySelectorAll(sel); "
        "return a.length && a[a.length - 1].textContent.includes('tok3'); }",
        arg=ANSWER,
    )
    assert up.disconnects == 0
    page.click("#stop")
    # The gateway saw its client go and closed the upstream request.
    assert up.wait_for_disconnects(1, timeout=5), "the upstream kept generating"
    wait_idle(page)
    article = page.locator(".msg.assistant").last
    assert article.locator(".note").text_content() == "Stopped."
    shown = last_answer(page).text_content()
    time.sleep(0.3)
    assert last_answer(page).text_content() == shown  # nothing more arrives
    assert page.locator(".msg.error").count() == 0


@pytest.mark.ui
def test_conversation_survives_reload(tab: Page, gateway: GatewayProcess, up: Upstream) -> None:
    page = tab.open(gateway)
    page.click("#settings-toggle")
    page.fill("#system", "You are terse.")
    ask(page, "hello there", model="test-model")
    wait_idle(page)
    assert last_answer(page).text_content().strip() == "hello there"
    first = up.requests[-1].body["messages"]
    assert first == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hello there"},
    ]

    page.reload()
    tab.wait_for_models()
    assert page.locator(".msg.user .content").all_text_contents() == ["hello there"]
    assert [t.strip() for t in page.locator(ANSWER).all_text_contents()] == ["hello there"]
    assert page.input_value("#system") == "You are terse."
    assert page.input_value("#model") == "test-model"

    # The next question carries the whole conversation.
    ask(page, "and again")
    wait_idle(page)
    assert up.requests[-1].body["messages"] == [
        *first,
        {"role": "assistant", "content": "hello there "},
        {"role": "user", "content": "and again"},
    ]

    page.click("#new-chat")
    assert page.locator(".msg").count() == 0
    page.reload()
    tab.wait_for_models()
    assert page.locator(".msg").count() == 0
    assert page.is_visible("#empty")


@pytest.mark.ui
def test_reload_mid_answer_keeps_what_arrived(
    tab: Page, gateway: GatewayProcess, up: Upstream
) -> None:
    page = tab.open(gateway)
    ask(page, "Go on forever", model="endless")
    page.wait_for_function(
        "sel => { const a = document.querySelectorAll(sel); "
        "return a.length && a[a.length - 1].textContent.includes('tok3'); }",
        arg=ANSWER,
    )
    page.reload()
    tab.wait_for_models()
    assert up.wait_for_disconnects(1, timeout=5), "the upstream kept generating"
    assert last_answer(page).text_content().startswith("tok0 tok1 tok2 tok3")
    note = page.locator(".msg.assistant .note").last.text_content()
    assert note.startswith("Interrupted"), note
    assert page.is_visible("#send")


@pytest.mark.ui
def test_api_key_asked_for_and_401_shown(
    tab: Page, keyed_gateway: GatewayProcess, up: Upstream
) -> None:
    page = tab.page
    page.goto(keyed_gateway.url)
    # The model list needs the key: the page asks for one.
    page.wait_for_selector("#key-panel", state="visible")
    assert "401" in page.text_content("#key-reason")

    page.fill("#api-key", "wrong")
    page.click("#key-save")
    page.wait_for_selector("#key-panel", state="visible")
    assert "rejected the API key (401)" in page.text_content("#key-reason")

    page.fill("#prompt", "who am I")
    page.press("#prompt", "Enter")
    error = page.locator(ERROR).last
    error.wait_for()
    text = error.text_content()
    assert "401" in text and "API key" in text, text
    assert "Traceback" not in text
    assert page.input_value("#prompt") == "who am I"  # kept, to send again

    page.fill("#api-key", "right")
    page.click("#key-save")
    tab.wait_for_models()
    assert page.is_hidden("#key-panel")
    page.select_option("#model", "test-model")
    page.press("#prompt", "Enter")
    wait_idle(page)
    assert last_answer(page).text_content().strip() == "who am I"
    # The key lives in this browser only.
    assert page.evaluate("localStorage.getItem('ails.apiKey')") == "right"


@pytest.mark.ui
def test_model_output_is_never_html(tab: Page, gateway: GatewayProcess) -> None:
    page = tab.open(gateway)
    # The upstream echoes the question back as the answer. Markup at the start
    # is an HTML block in Markdown; later in a line, inline HTML: both stay text.
    block = "<script>window.__pwned=1;alert(1)</script> <img src=x onerror=alert(1)>"
    inline = (
        "**bold** <img src=x onerror=alert(1)> [click](javascript:alert(1)) "
        "<b onmouseover=alert(1)>hover</b> <iframe src=javascript:alert(1)></iframe>"
    )
    for attack in (block, inline):
        ask(page, attack, model="test-model")
        wait_idle(page)
        # The question is shown as typed, as text too.
        assert page.locator(".msg.user .content").last.text_content() == attack
    first, second = page.locator(ANSWER).all()
    assert first.text_content().strip() == block
    assert "<img src=x onerror=alert(1)>" in second.text_content()
    assert "<b onmouseover=alert(1)>hover</b>" in second.text_content()
    for answer in (first, second):
        assert answer.locator("script, img, iframe, b, [onerror], [onmouseover]").count() == 0
        answer.hover()
    hrefs = second.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert not any(h and h.strip().lower().startswith("javascript:") for h in hrefs), hrefs
    assert second.locator("strong").text_content() == "bold"  # Markdown still renders
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("#messages img, #messages iframe").count() == 0
    # tab's teardown checks that no dialog opened and no error was logged.


@pytest.mark.ui
def test_model_picker_lists_the_gateways_models(tab: Page, gateway: GatewayProcess) -> None:
    page = tab.open(gateway)
    options = page.locator("#model option").evaluate_all("els => els.map(e => e.value)")
    assert sorted(options) == sorted(MODELS + [f"upstream1/{m}" for m in MODELS])


@pytest.mark.ui
def test_enter_sends_shift_enter_adds_a_line(
    tab: Page, gateway: GatewayProcess, up: Upstream
) -> None:
    page = tab.open(gateway)
    page.select_option("#model", "test-model")
    page.click("#prompt")
    page.keyboard.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    assert page.input_value("#prompt") == "line one\nline two"
    time.sleep(0.2)
    assert up.requests == []
    page.keyboard.press("Enter")
    wait_idle(page)
    assert up.requests[-1].body["messages"][-1]["content"] == "line one\nline two"
    assert page.input_value("#prompt") == ""


@pytest.mark.ui
def test_errors_are_readable(tab: Page, gateway: GatewayProcess) -> None:
    page = tab.open(gateway)

    ask(page, "hi", model="status:429:retry-after=7")
    page.locator(ERROR).last.wait_for()
    text = page.locator(ERROR).last.text_content()
    assert "Too many requests (429)" in text and "Try again in 7 s" in text, text

    page.fill("#prompt", "")
    ask(page, "hi", model="status:502")
    page.wait_for_function("n => document.querySelectorAll('.msg.error').length >= n", arg=2)
    text = page.locator(ERROR).last.text_content()
    assert "unavailable (502)" in text and "scripted 502" in text, text

    # An error event inside the stream (after the 200).
    page.fill("#prompt", "")
    ask(page, "hi", model="midstream_error:3")
    page.wait_for_function("n => document.querySelectorAll('.msg.error').length >= n", arg=3)
    text = page.locator(ERROR).last.text_content()
    assert "The model failed mid-answer" in text and "upstream exploded" in text, text

    # The gateway unreachable.
    page.route("**/v1/chat/completions", lambda route: route.abort())
    page.fill("#prompt", "")
    ask(page, "hi", model="test-model")
    page.wait_for_function("n => document.querySelectorAll('.msg.error').length >= n", arg=4)
    assert "Could not reach the gateway" in page.locator(ERROR).last.text_content()
    for t in page.locator(ERROR).all_text_contents():
        assert "Traceback" not in t and "{" not in t, t


@pytest.mark.ui
def test_usable_at_phone_width(browser: Any, gateway: GatewayProcess, up: Upstream) -> None:
    up.reset()
    tab = Page(browser, {"width": 375, "height": 740})
    try:
        page = tab.open(gateway)
        long_word = "x" * 300
        ask(page, f"see {long_word} and `{long_word}` ok", model="test-model")
        wait_idle(page)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the page scrolls sideways: {width}px wide"
        assert page.evaluate("document.body.scrollWidth") <= 375
        for selector in ("#model", "#new-chat", "#settings-toggle", "#prompt", "#send"):
            box = page.locator(selector).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, selector
            assert box["y"] >= 0 and box["y"] + box["height"] <= 740, selector
        assert tab.errors == [] and tab.dialogs == []
    finally:
        tab.close()


def _chunk(content: str, finish: str | None = None) -> str:
    delta = {"content": content} if content else {}
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


@pytest.mark.ui
def test_page_reads_any_well_formed_event_stream(tab: Page, gateway: GatewayProcess) -> None:
    # Streams the gateway does not send itself, fed to the page directly: CRLF and
    # CR line ends, comments, event and id fields, an error event after content,
    # and a body that ends without [DONE].
    page = tab.open(gateway)
    bodies = [
        ": keep-alive\r\n\r\n"
        f"data: {_chunk('Hello')}\r\n\r\n"
        f"event: message\nid: 7\ndata: {_chunk(' wor')}\n\n"
        f"data:{_chunk('ld')}\r\r"
        'data: {"error": {"message": "boom in the middle", "type": "server_error"}}\n\n'
        "data: [DONE]\n\n",
        f"data: {_chunk('partial')}\n\n",
        f"data: {_chunk('done', 'stop')}\n\ndata: [DONE]\n\n",
    ]

    def fulfil(route: Any) -> None:
        route.fulfill(status=200, content_type="text/event-stream", body=bodies.pop(0))

    page.route("**/v1/chat/completions", fulfil)
    ask(page, "one", model="test-model")
    page.locator(ERROR).last.wait_for()
    wait_idle(page)
    assert last_answer(page).text_content().strip() == "Hello world"
    assert page.locator(ERROR).last.text_content() == (
        "The model failed mid-answer: boom in the middle"
    )
    ask(page, "two")
    wait_idle(page)
    assert last_answer(page).text_content().strip() == "partial"
    note = page.locator(".msg.assistant .note").last.text_content()
    assert note.startswith("The answer was cut off"), note
    ask(page, "three")
    wait_idle(page)
    assert last_answer(page).text_content().strip() == "done"
    assert page.locator(".msg.assistant .note").last.text_content() == ""


# ---------------------------------------------------------------------- a busy embedded model


@pytest.fixture(scope="module")
def one_slot_gateway() -> Iterator[GatewayProcess]:
    """The embedded model on one slot, so a second request waits for the first."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AILS_LOCAL_PARALLEL", "1")
        with GatewayProcess(["--backend", "local", "--no-access-log"], startup_timeout=180) as gw:
            mp.delenv("AILS_LOCAL_PARALLEL")
            yield gw


def hold_the_slot(gateway: GatewayProcess) -> Any:
    """A streamed answer whose first token has arrived, with hundreds to come:
    the one slot stays busy until the returned response is closed."""
    body = {
        "model": "default",
        "messages": [{"role": "user", "content": "Count from 1 to 200, one number per line."}],
        "stream": True,
        "max_tokens": 300,
        "temperature": 0,
    }
    request = urllib.request.Request(
        f"{gateway.url}v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    resp = urllib.request.urlopen(request, timeout=60)
    while True:
        line = resp.readline()
        assert line, "the first answer ended before its first token"
        if b'"content":"' in line:
            return resp


@pytest.mark.ui
@pytest.mark.local
def test_the_page_says_the_model_is_busy(browser: Any, one_slot_gateway: GatewayProcess) -> None:
    p = Page(browser, {"width": 1100, "height": 760})
    try:
        page = p.open(one_slot_gateway)
        holder = hold_the_slot(one_slot_gateway)
        try:
            ask(page, "Say hi.", model="default")
            note = page.locator(".msg.assistant .note").last
            page.wait_for_function(
                "() => { const n = document.querySelectorAll('.msg.assistant .note'); "
                "return n.length && n[n.length - 1].textContent.startsWith('Waiting'); }"
            )
            assert note.text_content() == "Waiting for the model (1 ahead)…"
            assert last_answer(page).text_content() == ""
        finally:
            holder.close()  # the slot frees: the answer comes
        page.set_default_timeout(60_000)
        wait_idle(page)
        assert last_answer(page).text_content().strip()
        assert not note.text_content().startswith("Waiting")
        assert p.errors == [] and p.dialogs == []
    finally:
        p.close()
