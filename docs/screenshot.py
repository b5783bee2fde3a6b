"""Take docs/console.png: the demo's remediated run in the console, in the system's Chromium.

.venv/bin/python docs/screenshot.py
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import sync_playwright
from rich.console import Console

from interfaces.demo.runner import run_demo

OUTPUT = Path(__file__).with_name("console.png")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def screenshot(base_url: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 1250})
        page.goto(f"{base_url}/console/runs/fraud-day-2")
        page.screenshot(path=str(OUTPUT))
        browser.close()


if __name__ == "__main__":
    run_demo(
        Console(quiet=True), transactions_per_run=1000, seed=7, port=None, wait=False, at_the_end=screenshot
    )
    print(f"wrote {OUTPUT}")
