"""The console over HTTP: pages, the session and its cookie, CSRF, roles, and every bad
input answered with a page that says why, writing nothing."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from infrastructure.keyring import KeyEntry, KeyRing
from infrastructure.signing import Signer
from tests.support.api import AUDITOR_KEY, OPERATOR_KEY, WRITER_KEY, bearer, event_count
from tests.support.console import (
    GREEN_RUN,
    IDEMPOTENCY_FIELD,
    RED_RUN,
    console_login,
    csrf_of,
    seed_runs,
)

WRITE_FORM = re.compile(
    r'<form method="post" action="/console/(runs|actions)/[^"]+/(close|reopen|waive|redeliver)"'
)


@pytest.fixture
def seeded_open(api: TestClient):
    return api, seed_runs(api)


@pytest.fixture
def seeded_secured(secured_api: TestClient):
    return secured_api, seed_runs(secured_api, bearer(OPERATOR_KEY))


# --- Pages ------------------------------------------------------------------------------------


def test_runs_page_shows_a_green_and_a_red_run_with_their_counts(seeded_open) -> None:
    api, _ = seeded_open
    page = api.get("/console")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    rows = dict(re.findall(r'<tr data-run="([^"]+)">(.*?)</tr>', page.text, re.S))
    assert set(rows) == {GREEN_RUN, RED_RUN}
    assert 'class="badge green"' in rows[GREEN_RUN] and "committed" in rows[GREEN_RUN]
    assert 'class="badge red"' in rows[RED_RUN] and "rejected" in rows[RED_RUN]
    # Admitted 5, decided 3, one failed action.
    assert re.search(r'<td class="num">5</td>\s*<td class="num">3</td>', rows[RED_RUN])
    assert "1 failed" in rows[RED_RUN]


def test_runs_page_filters_by_status_and_lane_and_pages(seeded_open) -> None:
    api, _ = seeded_open
    rejected = api.get("/console", params={"status": "rejected"}).text
    assert f'data-run="{RED_RUN}"' in rejected and f'data-run="{GREEN_RUN}"' not in rejected
    assert "No runs match this filter" in api.get("/console", params={"lane": "credit"}).text
    first = api.get("/console", params={"limit": 1}).text
    assert first.count("<tr data-run=") == 1
    next_link = re.search(r'rel="next" href="([^"]+)"', first)
    assert next_link, "a second page is offered"
    second = api.get(next_link.group(1).replace("&amp;", "&")).text
    assert second.count("<tr data-run=") == 1 and second != first


def test_run_page_shows_reasons_reconciliation_verdicts_proof_and_events(seeded_open) -> None:
    api, _ = seeded_open
    red = api.get(f"/console/runs/{RED_RUN}").text
    assert re.search(r'id="count-missing">2<', red)
    assert re.search(r'id="count-failed">1<', red)
    assert re.search(r'id="count-unexpected">0<', red)
    assert "txn-r4" in red and "txn-r5" in red
    reasons = re.findall(r'<strong class="reason-code">([a-z]+)</strong>: (\d+)', red)
    assert ("missing", "2") in reasons and ("failed", "1") in reasons
    assert "No proof" in red
    assert red.count('<li>\n      <a class="mono" href=') >= 7  # open, basis, 3 decisions, action x2, ...

    green = api.get(f"/console/runs/{GREEN_RUN}").text
    assert 'id="proof-status" class="flash good"' in green
    assert "Verified" in green


def test_the_as_of_position_shows_the_summary_as_known_then(seeded_open) -> None:
    api, seeded = seeded_open
    then = api.get(f"/console/runs/{RED_RUN}", params={"as_of_position": seeded.red_decided_position}).text
    assert re.search(r'id="summary-status">open<', then)
    assert re.search(r'id="count-failed">0<', then)
    assert "No verdict yet" in then
    assert 'id="as-of-note"' in then
    # Nothing to close in the past: no write control on a page about an earlier point.
    assert not WRITE_FORM.search(then)


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"as_of_position": "1"}, 404, "nothing of it is known"),
        ({"as_of_position": "0"}, 422, "as_of_position"),
        ({"as_of_position": "x"}, 422, "as_of_position"),
        ({"as_of": "yesterday"}, 422, "as_of must be a time"),
        ({"as_of": "1999-01-01T00:00:00Z"}, 404, "nothing was recorded"),
        ({"as_of": "2026-01-01T00:00:00Z", "as_of_position": "3"}, 422, "not both"),
        ({"timeline_after": "-1"}, 422, "timeline_after"),
    ],
)
def test_a_bad_point_in_time_is_a_page_that_says_why(seeded_open, params, status, says) -> None:
    api, _ = seeded_open
    response = api.get(f"/console/runs/{RED_RUN}", params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert says in response.text


def test_unknown_runs_and_bad_filters_are_pages_that_say_why(seeded_open) -> None:
    api, _ = seeded_open
    assert api.get("/console/runs/no-such-run").status_code == 404
    assert api.get("/console/runs/bad%20id").status_code == 422
    assert "status must be one of" in api.get("/console", params={"status": "lost"}).text
    assert api.get("/console/actions", params={"status": "lost"}).status_code == 422
    assert api.get("/console/runs/no-such-run/proof.json").status_code == 404
    assert api.get(f"/console/runs/{RED_RUN}/proof.json").status_code == 404


def test_reconciliation_categories_page_on_their_own_cursor(api: TestClient) -> None:
    api.post("/runs", json={"run_id": "wide", "lane": "fraud"}, headers={"Idempotency-Key": "o"})
    inputs = [f"in-{number:03d}" for number in range(45)]
    admitted = api.post("/runs/wide/basis", json={"input_ids": inputs}, headers={"Idempotency-Key": "b"})
    first = api.get("/console/runs/wide", params={"min_position": admitted.json()["position"]}).text
    assert "in-000" in first and "in-019" in first and "in-020" not in first
    following = re.search(r'href="\?(missing_after=[^"#]+)#category-missing"', first)
    assert following, "the missing category offers its next page"
    second = api.get(f"/console/runs/wide?{following.group(1)}").text
    assert "in-020" in second and "in-039" in second and "in-019" not in second


def test_actions_and_audit_pages(seeded_open) -> None:
    api, seeded = seeded_open
    actions = api.get("/console/actions", params={"status": "failed"}).text
    assert seeded.failed_action_id in actions and "gateway timeout" in actions
    assert "No actions match" in api.get("/console/actions", params={"status": "committed"}).text
    audit = api.get("/console/audit").text
    head = int(re.search(r'id="head-position">(\d+)<', audit).group(1))
    assert head == api.app.state.service.head_position()
    assert re.search(r'id="head-hash">[0-9a-f]{64}<', audit)
    # Each seal made a checkpoint: the latest is shown, and checked now.
    served = api.get("/checkpoint").text.splitlines()
    assert re.search(rf'id="checkpoint-size">{served[1]}<', audit)
    verification = re.search(r'id="checkpoint-verification"[^>]*>(.*?)</p>', audit, re.S).group(1)
    assert "<strong>Verified</strong>" in verification and f"size {served[1]}" in verification


def test_the_audit_page_says_when_the_latest_checkpoint_does_not_verify(seeded_open) -> None:
    api, _ = seeded_open
    transparency = api.app.state.service.transparency
    stranger = Signer(Ed25519PrivateKey.generate())
    trusted = transparency.keys
    transparency.keys = lambda: KeyRing([KeyEntry(transparency.origin, stranger)])
    try:
        audit = api.get("/console/audit").text
    finally:
        transparency.keys = trusted
    verification = re.search(r'id="checkpoint-verification"[^>]*>(.*?)</p>', audit, re.S).group(1)
    assert "<strong>Not verified</strong>" in verification and "signature does not verify" in verification
    assert 'class="flash bad"' in audit


def test_docs_and_console_load_nothing_from_another_host(api: TestClient) -> None:
    docs = api.get("/docs").text
    assert "/console/static/swagger-ui/swagger-ui-bundle.js" in docs
    assert "cdn" not in docs.lower() and "https://" not in docs
    for asset in (
        "/console/static/swagger-ui/swagger-ui-bundle.js",
        "/console/static/swagger-ui/swagger-ui.css",
        "/console/static/htmx/htmx.min.js",
        "/console/static/console.css",
    ):
        assert api.get(asset).status_code == 200, asset
    page = api.get("/console")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert not re.search(r'(src|href)="(https?:)?//', page.text)
    assert all(not path.startswith("/console") for path in api.get("/openapi.json").json()["paths"])


# --- Sessions and roles -----------------------------------------------------------------------


def test_without_a_session_every_page_asks_for_a_login(seeded_secured) -> None:
    api, _ = seeded_secured
    for path in ("/console", f"/console/runs/{RED_RUN}", "/console/actions", "/console/audit"):
        response = api.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/console/login?next=%2Fconsole")
    # An API key sent as a header does not open the console: the console has its own session.
    assert api.get("/console", headers=bearer(OPERATOR_KEY), follow_redirects=False).status_code == 303


def test_an_unknown_key_is_refused_and_starts_no_session(seeded_secured) -> None:
    api, _ = seeded_secured
    response = console_login(api, "dlk_guessed")
    assert response.status_code == 401
    assert "This API key is not known" in response.text
    assert api.get("/console", follow_redirects=False).status_code == 303


def test_a_login_keeps_a_signed_httponly_strict_cookie_not_the_key(seeded_secured) -> None:
    api, _ = seeded_secured
    response = console_login(api, OPERATOR_KEY)
    assert response.status_code == 303 and response.headers["location"] == "/console"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert OPERATOR_KEY not in cookie
    assert api.get("/console").status_code == 200

    # A cookie changed by one character is no session at all.
    value = api.cookies.get("dl_console")
    api.cookies.set("dl_console", value[:-1] + ("A" if value[-1] != "A" else "B"), path="/console")
    assert api.get("/console", follow_redirects=False).status_code == 303


def test_after_a_login_only_console_pages_are_followed(seeded_secured) -> None:
    api, _ = seeded_secured
    page = api.get("/console/login", params={"next": "https://elsewhere.example/x"})
    assert 'name="next" value="/console"' in page.text
    response = api.post(
        "/console/login",
        data={"api_key": OPERATOR_KEY, "csrf_token": csrf_of(page.text), "next": "//elsewhere.example"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/console"


def test_an_auditor_sees_no_write_controls_and_cannot_write(seeded_secured) -> None:
    api, _ = seeded_secured
    console_login(api, AUDITOR_KEY)
    for path in (f"/console/runs/{RED_RUN}", "/console/actions", f"/console/runs/{GREEN_RUN}"):
        page = api.get(path)
        assert page.status_code == 200
        assert not WRITE_FORM.search(page.text), path
    before = event_count(api)
    token = csrf_of(api.get("/console").text)
    refused = api.post(
        f"/console/runs/{RED_RUN}/reopen",
        data={"csrf_token": token, "idempotency_key": "k-1", "reason": "try"},
    )
    assert refused.status_code == 403 and "needs the role operator" in refused.text
    assert event_count(api) == before
    # A writer may not operate either.
    api.cookies.clear()
    console_login(api, WRITER_KEY)
    assert not WRITE_FORM.search(api.get(f"/console/runs/{RED_RUN}").text)


def test_an_operator_sees_write_controls_and_a_double_submission_writes_once(seeded_secured) -> None:
    api, _ = seeded_secured
    console_login(api, OPERATOR_KEY)
    page = api.get(f"/console/runs/{RED_RUN}").text
    assert WRITE_FORM.search(page)
    form = {"csrf_token": csrf_of(page), "idempotency_key": IDEMPOTENCY_FIELD.search(page).group(1)}
    form["reason"] = "missing decisions were sent"
    first = api.post(f"/console/runs/{RED_RUN}/reopen", data=form, follow_redirects=False)
    assert first.status_code == 303 and "notice=reopened" in first.headers["location"]
    after_first = event_count(api)
    again = api.post(f"/console/runs/{RED_RUN}/reopen", data=form, follow_redirects=False)
    assert again.status_code == 303
    assert event_count(api) == after_first
    reopened = api.get(first.headers["location"]).text
    assert "The run was reopened" in reopened and re.search(r'id="summary-status">open<', reopened)
    run = api.get(f"/runs/{RED_RUN}", headers=bearer(OPERATOR_KEY)).json()
    assert run["attempt"] == 2


@pytest.mark.parametrize(
    "forge",
    ["no token", "another session's token", "empty token", "not a form"],
)
def test_a_forged_form_post_is_refused_and_writes_nothing(seeded_secured, forge) -> None:
    api, _ = seeded_secured
    console_login(api, OPERATOR_KEY)
    page = api.get(f"/console/runs/{RED_RUN}").text
    form = {"idempotency_key": IDEMPOTENCY_FIELD.search(page).group(1), "reason": "forged"}
    if forge == "another session's token":
        other = TestClient(api.app)  # another browser of the same server (no second lifespan)
        console_login(other, OPERATOR_KEY)
        form["csrf_token"] = csrf_of(other.get("/console").text)
    elif forge == "empty token":
        form["csrf_token"] = ""
    before = event_count(api)
    if forge == "not a form":
        response = api.post(f"/console/runs/{RED_RUN}/reopen", json={**form, "csrf_token": csrf_of(page)})
        assert response.status_code == 422
    else:
        response = api.post(f"/console/runs/{RED_RUN}/reopen", data=form)
        assert response.status_code == 403
        assert "CSRF" in response.text
    assert event_count(api) == before


def test_a_bad_operator_form_writes_nothing(seeded_secured) -> None:
    api, seeded = seeded_secured
    console_login(api, OPERATOR_KEY)
    token = csrf_of(api.get("/console").text)
    before = event_count(api)
    cases = [
        (
            f"/console/runs/{RED_RUN}/reopen",
            {"csrf_token": token, "idempotency_key": "k", "reason": "  "},
            422,
        ),
        (f"/console/runs/{RED_RUN}/reopen", {"csrf_token": token, "reason": "no key"}, 400),
        (f"/console/runs/{GREEN_RUN}/close", {"csrf_token": token, "idempotency_key": "k2"}, 409),
        ("/console/runs/no-such-run/close", {"csrf_token": token, "idempotency_key": "k3"}, 404),
        (
            f"/console/actions/{seeded.failed_action_id}/waive",
            {"csrf_token": token, "idempotency_key": "k4"},
            422,
        ),
        (
            "/console/actions/not-a-uuid/waive",
            {"csrf_token": token, "idempotency_key": "k5", "reason": "x"},
            422,
        ),
    ]
    for path, form, status in cases:
        response = api.post(path, data=form)
        assert response.status_code == status, (path, form, response.text)
        assert response.headers["content-type"].startswith("text/html")
    assert (
        api.post(
            f"/console/runs/{RED_RUN}/reopen",
            content=f"csrf_token={token}&csrf_token={token}",
            headers={"content-type": "application/x-www-form-urlencoded"},
        ).status_code
        == 422
    )
    assert event_count(api) == before


def test_an_operator_waives_a_failed_action_from_the_actions_page(seeded_secured) -> None:
    api, seeded = seeded_secured
    console_login(api, OPERATOR_KEY)
    page = api.get("/console/actions", params={"status": "failed"}).text
    # The run is closed (red): nothing of it can change until it is reopened.
    assert "/waive" not in page and "reopen the run to waive" in page
    reopened = api.post(
        f"/runs/{RED_RUN}/reopen",
        json={"reason": "waive the failed action"},
        headers={"Idempotency-Key": "reopen-1", **bearer(OPERATOR_KEY)},
    ).json()
    page = api.get("/console/actions", params={"status": "failed", "min_position": reopened["position"]}).text
    assert f'action="/console/actions/{seeded.failed_action_id}/waive"' in page
    form = {
        "csrf_token": csrf_of(page),
        "idempotency_key": IDEMPOTENCY_FIELD.search(page).group(1),
        "reason": "the card was blocked by hand",
    }
    response = api.post(f"/console/actions/{seeded.failed_action_id}/waive", data=form)
    assert response.status_code == 200 and "The action was waived" in response.text
    action = api.get(f"/actions/{seeded.failed_action_id}", headers=bearer(AUDITOR_KEY)).json()
    assert action["status"] == "waived" and action["waive_reason"] == "the card was blocked by hand"


def test_logging_out_ends_the_session(seeded_secured) -> None:
    api, _ = seeded_secured
    console_login(api, AUDITOR_KEY)
    token = csrf_of(api.get("/console").text)
    assert api.post("/console/logout", data={}, follow_redirects=False).status_code == 403
    response = api.post("/console/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert api.get("/console", follow_redirects=False).status_code == 303


def test_open_local_mode_needs_no_login_and_still_checks_csrf(seeded_open) -> None:
    api, _ = seeded_open
    page = api.get("/console/login", follow_redirects=False)
    assert page.status_code == 303
    run_page = api.get(f"/console/runs/{RED_RUN}").text
    assert "open local mode" in run_page and WRITE_FORM.search(run_page)
    before = event_count(api)
    refused = api.post(f"/console/runs/{RED_RUN}/reopen", data={"idempotency_key": "k", "reason": "x"})
    assert refused.status_code == 403
    assert event_count(api) == before


def test_hostile_cookies_and_tokens_are_refused_not_crashed_on(seeded_secured) -> None:
    api, _ = seeded_secured
    for cookie in (b"dl_console=\xc3\xa9.\xc3\xa9", b"dl_console=" + b"A" * 3000, b"dl_console=a.b"):
        response = api.get("/console", headers={"cookie": cookie}, follow_redirects=False)
        assert response.status_code == 303, cookie
    console_login(api, OPERATOR_KEY)
    before = event_count(api)
    response = api.post(
        f"/console/runs/{RED_RUN}/reopen",
        data={"csrf_token": "\u00e9\u00e9", "idempotency_key": "k", "reason": "x"},
    )
    assert response.status_code == 403
    assert event_count(api) == before


def test_the_as_of_time_shows_the_run_as_known_then(seeded_open) -> None:
    api, seeded = seeded_open
    records = api.get("/audit", params={"run_id": RED_RUN, "limit": 1000}).json()["records"]
    then = next(record for record in records if record["position"] == seeded.red_decided_position)
    page = api.get(f"/console/runs/{RED_RUN}", params={"as_of": then["recorded_at"]}).text
    shown = int(re.search(r"Showing the run as known at position (\d+)", page).group(1))
    # The time names the last position recorded at or before it: the decision's, or (same
    # millisecond) a later event's, but never one after the verdict.
    assert seeded.red_decided_position <= shown
    assert re.search(r'id="summary-status">open<', page)
    assert "No verdict yet" in page
