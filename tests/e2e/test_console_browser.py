"""The console in a real browser: Playwright driving the system's Chromium (never a
downloaded one) against the app served by uvicorn on a loopback port."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from application.proof_checks import verify_run_proof
from infrastructure.settings import ApiKeyEntry, Role, Settings
from interfaces.api.app import create_app
from interfaces.api.security import hash_api_key
from tests.support.api import AUDITOR_KEY, OPERATOR_KEY, bearer
from tests.support.console import (
    DISPATCH_RUN,
    GREEN_RUN,
    RED_RUN,
    Seeded,
    effectors_toml,
    seed_dead_letter,
    seed_runs,
    served,
)
from tests.support.webhook_receiver import ScriptedReceiver, serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI needs /usr/bin/chromium (.ci/run installs it)", pytrace=False)
        pytest.skip("no /usr/bin/chromium (apt-get install chromium)")
    # Assertions wait for what a loaded 2-core machine takes to render (/docs builds the
    # OpenAPI document on first request), not Playwright's 5 s.
    sync_api.expect.set_options(timeout=30_000)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def console_settings(database_url: str, signing_key_hex: str, **extra: Any) -> Settings:
    """The console's settings: an operator key and an auditor key."""
    return Settings(
        database_url=database_url,
        signing_key=signing_key_hex,
        api_keys_file=None,
        api_keys=[
            ApiKeyEntry(principal="ops", roles=[Role.OPERATOR], key_sha256=hash_api_key(OPERATOR_KEY)),
            ApiKeyEntry(principal="audit", roles=[Role.AUDITOR], key_sha256=hash_api_key(AUDITOR_KEY)),
        ],
        **extra,
    )


@pytest.fixture
def console(database_url: str, signing_key_hex: str) -> Iterator[tuple[str, Seeded]]:
    """The secured app (an operator and an auditor key) served on loopback, seeded with a
    green and a red run."""
    settings = console_settings(database_url, signing_key_hex)
    with served(create_app(settings)) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield base, seed_runs(client, bearer(OPERATOR_KEY))


@pytest.fixture
def dispatching_console(
    database_url: str, signing_key_hex: str, tmp_path: Path
) -> Iterator[tuple[str, ScriptedReceiver, str]]:
    """The secured app with its dispatcher and one effector, whose receiver fails an
    action's first delivery and accepts the next; seeded with a dead-lettered action."""
    receiver = ScriptedReceiver(script=["fail", "ok"])
    with serving(receiver) as url:
        effectors = tmp_path / "effectors.toml"
        effectors.write_text(effectors_toml(url, receiver.secret))
        settings = console_settings(database_url, signing_key_hex, effectors_file=effectors)
        with served(create_app(settings)) as base, httpx.Client(base_url=base, timeout=30) as client:
            yield base, receiver, seed_dead_letter(client, bearer(OPERATOR_KEY))


def logged_in(browser: Any, base: str, key: str) -> Any:
    context = browser.new_context(
        base_url=base, accept_downloads=True, viewport={"width": 1366, "height": 800}
    )
    page = context.new_page()
    page.goto("/console")
    assert "/console/login" in page.url
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/console$"))
    return page


def test_an_operator_reads_a_red_run_and_travels_back_in_time(browser: Any, console) -> None:
    base, seeded = console
    page = logged_in(browser, base, OPERATOR_KEY)
    sync_api.expect(page.locator(f'tr[data-run="{GREEN_RUN}"] .badge')).to_have_class(re.compile("green"))
    sync_api.expect(page.locator(f'tr[data-run="{RED_RUN}"] .badge')).to_have_class(re.compile("red"))

    page.click(f"text={RED_RUN}")
    page.wait_for_url(re.compile(f"/console/runs/{RED_RUN}$"))
    sync_api.expect(page.locator("#verdict-badge")).to_have_text("rejected")
    reasons = page.locator("#verdicts .reasons li").all_inner_texts()
    assert any(reason.startswith("missing: 2") for reason in reasons), reasons
    assert any(reason.startswith("failed: 1") for reason in reasons), reasons
    sync_api.expect(page.locator("#count-missing")).to_have_text("2")
    sync_api.expect(page.locator("#count-failed")).to_have_text("1")
    sync_api.expect(page.locator("#category-missing .ids")).to_contain_text("txn-r4")
    sync_api.expect(page.get_by_role("button", name="Reopen run")).to_be_visible()

    # Move the slider back to the moment the last decision was in: open, nothing failed yet.
    page.locator("#as-of-slider").fill(str(seeded.red_decided_position))
    sync_api.expect(page.locator("#as-of-note")).to_contain_text(f"position {seeded.red_decided_position}")
    sync_api.expect(page.locator("#summary-status")).to_have_text("open")
    sync_api.expect(page.locator("#count-failed")).to_have_text("0")
    sync_api.expect(page.locator("#summary-decided")).to_have_text("3")
    assert f"as_of_position={seeded.red_decided_position}" in page.url
    # No write control on a page about the past.
    assert page.get_by_role("button", name="Reopen run").count() == 0
    page.context.close()


def test_a_proof_is_downloaded_and_verifies_against_the_servers_key(
    browser: Any, console, tmp_path: Path
) -> None:
    base, _ = console
    page = logged_in(browser, base, AUDITOR_KEY)
    page.goto(f"/console/runs/{GREEN_RUN}")
    sync_api.expect(page.locator("#proof-status")).to_contain_text("Verified")
    with page.expect_download() as download_info:
        page.click("#proof-download")
    saved = tmp_path / "proof.json"
    download_info.value.save_as(saved)
    proof = json.loads(saved.read_text())
    public_key = httpx.get(f"{base}/keys", headers=bearer(AUDITOR_KEY)).json()["public_key"]
    verify_run_proof(proof, public_key)  # raises VerificationFailed on any mismatch
    assert proof["run_id"] == GREEN_RUN
    page.context.close()


def test_an_auditor_sees_no_write_controls(browser: Any, console) -> None:
    base, _ = console
    page = logged_in(browser, base, AUDITOR_KEY)
    for path in (f"/console/runs/{RED_RUN}", f"/console/runs/{GREEN_RUN}", "/console/actions"):
        page.goto(path)
        assert page.locator("form[method=post] button").all_inner_texts() == ["Log out"], path
    page.context.close()


def test_a_form_posted_without_its_csrf_token_is_refused(browser: Any, console) -> None:
    base, _ = console
    page = logged_in(browser, base, OPERATOR_KEY)
    # The browser's own session cookie rides along; the form lacks the token.
    forged = page.request.post(
        f"/console/runs/{RED_RUN}/reopen",
        form={"idempotency_key": "forged-1", "reason": "forged"},
        max_redirects=0,
    )
    assert forged.status == 403
    page.goto(f"/console/runs/{RED_RUN}")
    sync_api.expect(page.locator("#summary-status")).to_have_text("rejected")

    # The real form works, and the page says what happened.
    page.fill("#write-controls input[name=reason]", "the missing decisions were sent")
    page.get_by_role("button", name="Reopen run").click()
    sync_api.expect(page.locator("#notice")).to_contain_text("reopened")
    sync_api.expect(page.locator("#summary-status")).to_have_text("open")
    page.context.close()


def test_the_api_docs_render_with_nothing_from_another_host(browser: Any, console) -> None:
    base, _ = console
    context = browser.new_context(base_url=base)
    elsewhere: list[str] = []

    def only_this_server(route: Any) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_this_server)
    page = context.new_page()
    page.goto("/docs")
    # Swagger UI renders the whole schema in the browser: on a loaded machine that took over
    # the 5 s default (seen at load average 14 on 2 cores).
    sync_api.expect(page.locator(".opblock-summary-path", has_text="/runs/{run_id}/close")).to_be_visible(
        timeout=30_000
    )
    assert elsewhere == []
    context.close()


def test_an_operator_redelivers_a_dead_lettered_action_and_sees_it_delivered(
    browser: Any, dispatching_console
) -> None:
    base, receiver, action_id = dispatching_console
    page = logged_in(browser, base, OPERATOR_KEY)
    page.goto(f"/console/actions?run_id={DISPATCH_RUN}")
    row = page.locator(f'tr[data-action="{action_id}"]')
    sync_api.expect(row.locator(".status")).to_have_text("failed")
    sync_api.expect(row.locator(".dispatch")).to_have_text("dead lettered")
    sync_api.expect(row.locator(".attempts")).to_have_text("1")
    attempts = page.locator(f'tr[data-deliveries-of="{action_id}"] tbody tr')
    sync_api.expect(attempts).to_have_count(1)
    sync_api.expect(attempts.first).to_contain_text("500")

    row.get_by_role("button", name="Redeliver").click()
    sync_api.expect(page.locator("#notice")).to_contain_text("Redelivery requested")
    # The dispatcher sends it again (same webhook-id); the page shows it delivered and committed.
    deadline = time.monotonic() + 30
    while row.locator(".status").inner_text() != "committed":
        assert time.monotonic() < deadline, "the redelivered action was never committed"
        page.wait_for_timeout(100)
        page.reload()
    sync_api.expect(row.locator(".dispatch")).to_have_text("delivered")
    sync_api.expect(row.locator(".attempts")).to_have_text("2")
    sync_api.expect(row.locator(".external-ref")).to_have_text(f"ref-{action_id[:8]}")
    sync_api.expect(attempts).to_have_count(2)
    assert row.get_by_role("button", name="Redeliver").count() == 0
    sent = receiver.requests_for(action_id)
    assert len(sent) == 2 and sent[0].body == sent[1].body
    assert receiver.effects == {action_id: 1}
    page.context.close()


def test_an_auditor_sees_the_dead_letter_and_no_redeliver_button(browser: Any, dispatching_console) -> None:
    base, _, action_id = dispatching_console
    auditor = logged_in(browser, base, AUDITOR_KEY)
    auditor.goto(f"/console/actions?run_id={DISPATCH_RUN}")
    sync_api.expect(auditor.locator(f'tr[data-action="{action_id}"] .dispatch')).to_have_text("dead lettered")
    assert auditor.get_by_role("button", name="Redeliver").count() == 0
    assert auditor.locator("form[method=post] button").all_inner_texts() == ["Log out"]
    # The same page shows an operator the button: the auditor lacks it for the role alone.
    operator = logged_in(browser, base, OPERATOR_KEY)
    operator.goto(f"/console/actions?run_id={DISPATCH_RUN}")
    sync_api.expect(operator.get_by_role("button", name="Redeliver")).to_have_count(1)
    auditor.context.close()
    operator.context.close()


def test_a_redeliver_form_without_its_csrf_token_is_refused(browser: Any, dispatching_console) -> None:
    base, receiver, action_id = dispatching_console
    page = logged_in(browser, base, OPERATOR_KEY)
    page.goto(f"/console/actions?run_id={DISPATCH_RUN}")
    forged = page.request.post(
        f"/console/actions/{action_id}/redeliver", form={"idempotency_key": "forged-1"}, max_redirects=0
    )
    assert forged.status == 403
    action = httpx.get(f"{base}/actions/{action_id}", headers=bearer(AUDITOR_KEY)).json()
    assert (action["status"], action["dispatch"], len(action["deliveries"])) == ("failed", "dead_lettered", 1)
    assert len(receiver.requests_for(action_id)) == 1
    # The same post with the page's token is accepted.
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    accepted = page.request.post(
        f"/console/actions/{action_id}/redeliver",
        form={"csrf_token": token, "idempotency_key": "real-1"},
        max_redirects=0,
    )
    assert accepted.status == 303 and "notice=redelivered" in accepted.headers["location"]
    page.context.close()
