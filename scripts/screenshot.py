"""Take docs/ui-screenshot.png: the chat page of ``ails serve`` answering a question.

    .venv/bin/python scripts/screenshot.py                      # the embedded model
    .venv/bin/python scripts/screenshot.py --upstream URL       # any OpenAI-compatible server
    .venv/bin/python scripts/screenshot.py --width 375 --height 740 --out /tmp/phone.png

Runs ``ails serve`` on a free loopback port (through ``tests/ui_gateway.py``, so
the page is there whether or not the CLI mounts it itself), asks the question in
headless Chromium (Debian's, ``scripts/install-browser.sh``), waits for the whole
answer and saves the window; ~30 s per answer of the embedded model on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from ui_gateway import GatewayProcess  # noqa: E402

QUESTION = "How do I reverse a list in Python? Answer briefly, with a code example."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "ui-screenshot.png"))
    parser.add_argument("--upstream", help="serve this OpenAI-compatible base URL instead")
    parser.add_argument("--model", help="pick this model (default: the first listed)")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=760)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--tries", type=int, default=4, help="asks until a code block shows")
    ns = parser.parse_args()

    from playwright.sync_api import sync_playwright

    serve_args = ["--upstream", ns.upstream] if ns.upstream else []
    with GatewayProcess(serve_args, startup_timeout=180) as gateway, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=ns.chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": ns.width, "height": ns.height})
        page.goto(gateway.url)
        page.wait_for_function("() => document.querySelectorAll('#model option').length > 0")
        if ns.model:
            page.select_option("#model", ns.model)
        for attempt in range(ns.tries):
            if attempt:
                page.click("#new-chat")
            page.fill("#prompt", ns.question)
            page.press("#prompt", "Enter")
            page.wait_for_selector(".msg.assistant", state="attached")
            page.wait_for_selector(".msg.streaming", state="detached", timeout=300_000)
            # The embedded model samples (temperature 0.8 unless asked otherwise):
            # ask again until the answer shows what the page renders, a code block.
            if page.locator(".msg.assistant pre").count() or ns.upstream:
                break
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.mouse.move(ns.width // 2, ns.height - 150)  # no button left in its hover state
        page.screenshot(path=ns.out)
        browser.close()
    print(f"wrote {ns.out}")


if __name__ == "__main__":
    main()
