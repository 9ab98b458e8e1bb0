"""The web console in a real browser: headless Chromium (Debian's `chromium`) driven by Playwright, against
`lethe serve` (embedded worker) on Postgres, erasing a concept from the shipped testbed end to end.

Set LETHE_TEST_CONSOLE_SCREENSHOTS=DIR to keep the screenshots of every page (docs/console/ holds the committed ones).
Torch-heavy (one real erasure): run it alone under `flock /tmp/torch.lock`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from core.certificates.service import verify_document
from core.db import dispose_engines, get_engine, unit_of_work
from core.migrate import upgrade
from core.signing import load_public_key
from core.tenancy import service as tenancy
from core.testbed.paths import SHIPPED
from tests.integration.worker_support import child_env, free_port, processes, wait_for

CHROMIUM = Path("/usr/bin/chromium")
ERASURE_TIMEOUT_S = 600

pytestmark = pytest.mark.slow(minutes=0.9)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    assert CHROMIUM.exists(), "install Debian's chromium: apt-get install -y chromium (.ci/run does)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


class Shots:
    """Screenshots of the pages the test visits (kept when LETHE_TEST_CONSOLE_SCREENSHOTS names a folder)."""

    def __init__(self, tmp: Path) -> None:
        target = os.environ.get("LETHE_TEST_CONSOLE_SCREENSHOTS")
        self.dir = Path(target) if target else tmp / "screenshots"
        self.dir.mkdir(parents=True, exist_ok=True)

    def take(self, page: object, name: str) -> None:
        page.screenshot(path=str(self.dir / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (240, 240, 240)).save(buf, format="PNG")
    return buf.getvalue()


def _keys(settings_env: dict[str, str]) -> dict[str, str]:
    from core.config import Settings

    settings = Settings(database_url=settings_env["LETHE_DATABASE_URL"], data_dir=settings_env["LETHE_DATA_DIR"])
    engine = get_engine(settings)
    with unit_of_work(engine) as s:
        acme = tenancy.get_or_create_tenant(s, "acme", require_approval=True)
        globex = tenancy.get_or_create_tenant(s, "globex")
        officer = tenancy.create_key(s, settings, acme, "erasures:write,erasures:read,models:read,models:write,"
                                     "audit:read", name="Olivia Officer")[1]
        approver = tenancy.create_key(s, settings, acme, "erasures:read,erasures:approve,audit:read",
                                      name="Arne Approver")[1]
        stranger = tenancy.create_key(s, settings, globex, "admin", name="Gina Globex")[1]
    return {"officer": officer, "approver": approver, "stranger": stranger}


def _sign_in(page: object, base: str, key: str, next_path: str = "/console/") -> None:
    page.goto(f"{base}{next_path}")  # type: ignore[attr-defined]
    assert "/console/sign-in" in page.url  # type: ignore[attr-defined]
    page.get_by_label("API key").fill(key)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()  # type: ignore[attr-defined]
    page.wait_for_url(f"{base}{next_path}")  # type: ignore[attr-defined]


def _wait_text(page: object, url: str, text: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page.goto(url)  # type: ignore[attr-defined]
        if text in page.content():  # type: ignore[attr-defined]
            return
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}")


def test_console_in_a_real_browser(browser: object, pg_url: str, data_dir: Path, tmp_path: Path) -> None:
    shots = Shots(tmp_path)
    models = data_dir / "models"
    shutil.copytree(SHIPPED, models / "mini-canvas")
    upgrade(pg_url)
    env = child_env(database_url=pg_url, data_dir=str(data_dir), job_progress_interval_seconds="0.5",
                    broker_url="", console_idle_timeout_minutes="30")
    keys = _keys(env)
    dispose_engines()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with processes(tmp_path) as procs:
        procs.start("serve", [sys.executable, "-m", "core.cli", "serve", "--port", str(port)], env)
        wait_for(lambda: httpx.get(f"{base}/healthz", timeout=1).status_code == 200, 90, "lethe serve")
        csp_errors: list[str] = []
        officer_ctx = browser.new_context(accept_downloads=True)  # type: ignore[attr-defined]
        page = officer_ctx.new_page()
        page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)

        # 1. Sign in (the key goes into a password field, never into a URL).
        page.goto(f"{base}/console/")
        assert page.url.startswith(f"{base}/console/sign-in")
        shots.take(page, "sign-in")
        page.get_by_label("API key").fill(keys["officer"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/console/")
        assert "Olivia Officer" in page.content()

        # 2. Register the testbed; the page shows its validation status until it is ready.
        page.goto(f"{base}/console/models")
        page.get_by_label("Name (unique in your tenant)").fill("mini-canvas")
        page.get_by_label("Source", exact=False).fill((models / "mini-canvas" / "pipeline").as_uri())
        page.get_by_label("Tags (comma-separated)").fill("testbed")
        page.get_by_role("button", name="Register").click()
        page.wait_for_url(f"{base}/console/models")
        _wait_text(page, f"{base}/console/models", "status-ready", 180, "model validation")
        shots.take(page, "models")

        # 3. File a takedown: a validation error first (shown beside its field), then the real one with an image.
        page.goto(f"{base}/console/requests/new")
        page.get_by_label("Model to erase from").select_option(label="mini-canvas")
        page.get_by_label("Concept (what the model must stop producing)").fill("circle")
        page.get_by_label("Example prompts", exact=False).fill("a circle in striped style")
        page.get_by_label("Example image", exact=False).set_input_files(
            files=[{"name": "notice.png", "mimeType": "image/png", "buffer": _png()}])
        page.get_by_label("Regime").select_option("dmca")
        page.get_by_label("Basis", exact=False).fill("17 U.S.C. § 512(c) takedown notice")
        page.get_by_label("External reference", exact=False).fill("DMCA-2026-0042")
        page.get_by_label("Requester name").fill("Jane Doe")
        page.get_by_label("Requester email").fill("not-an-email")
        page.get_by_label("Requester organization").fill("Example Estate")
        page.get_by_label("Received (UTC)").fill("2026-11-28T09:00")
        page.get_by_label("Due (UTC)").fill("2030-12-05T09:00")
        page.get_by_label("Priority", exact=False).fill("5")
        page.get_by_label("Labels", exact=False).fill("takedown, q4")
        page.get_by_role("button", name="File the request").click()
        error = page.locator("#requester_email-error")
        assert error.is_visible() and "email" in error.inner_text()
        assert page.get_by_label("Requester email").get_attribute("aria-invalid") == "true"
        shots.take(page, "new-takedown-errors")
        page.get_by_label("Requester email").fill("legal@example.com")
        page.get_by_label("Example image", exact=False).set_input_files(
            files=[{"name": "notice.png", "mimeType": "image/png", "buffer": _png()}])
        page.get_by_role("button", name="File the request").click()
        page.wait_for_url(f"{base}/console/requests/*")
        request_url = page.url
        request_id = request_url.rsplit("/", 1)[1]
        assert "awaiting approval" in page.locator("#status").inner_text()
        assert "You filed this request" not in page.content()  # no erasures:approve: no decision section at all
        assert "1 example image(s)" in page.content()

        # 4. The inbox lists it; a search by external reference finds it.
        page.goto(f"{base}/console/")
        page.get_by_label("External reference").fill("dmca-2026")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(f"{base}/console/?*")
        assert page.locator(f'a[href="/console/requests/{request_id}"]').count() == 1
        shots.take(page, "inbox")

        # 5. A second person approves it from the approval queue (keyboard only: Tab to the button, Enter).
        approver_ctx = browser.new_context()  # type: ignore[attr-defined]
        approver = approver_ctx.new_page()
        _sign_in(approver, base, keys["approver"])
        approver.goto(f"{base}/console/approvals")
        shots.take(approver, "approvals")
        for _ in range(60):
            approver.keyboard.press("Tab")
            focused = approver.evaluate("document.activeElement.getAttribute('aria-label') || ''")
            if focused == "Approve request for circle":
                break
        else:
            raise AssertionError("Tab never reached the approve button")
        approver.keyboard.press("Enter")
        approver.wait_for_url(request_url)
        assert "queued" in approver.locator("#status").inner_text() or \
            "running" in approver.locator("#status").inner_text()

        # 6. The request page follows the job live (console.js polls the live fragment) until it succeeds.
        page.goto(request_url)
        deadline = time.monotonic() + ERASURE_TIMEOUT_S
        saw_running = saw_progress = False
        while time.monotonic() < deadline:
            try:
                terminal = page.locator("[data-terminal]").get_attribute("data-terminal", timeout=5000)
                status = page.locator("#status").inner_text(timeout=5000)
            except Exception:  # the page reloads itself when the job finishes
                continue
            if "running" in status:
                try:
                    progress = int(page.locator("#progress").get_attribute("value", timeout=5000) or 0)
                except Exception:
                    progress = 0
                if not saw_running or (progress >= 20 and not saw_progress):
                    shots.take(page, "request-running")
                saw_running, saw_progress = True, saw_progress or progress >= 20
            if terminal == "true":
                break
            time.sleep(1.0)
        page.wait_for_load_state()
        page.wait_for_selector("#certificate-status", timeout=30_000)
        assert "succeeded" in page.locator("#status").inner_text(), page.locator("#live").inner_text()
        assert saw_running, "the live part never showed the job running"

        # 7. The grid, the verification table, artifacts and the certificate.
        grid = page.locator("#grid")
        grid.scroll_into_view_if_needed()
        assert page.evaluate("document.getElementById('grid').naturalWidth") > 0
        rows = page.locator("section[aria-labelledby=verification-heading] tbody tr")
        assert rows.count() >= 1
        for i in range(rows.count()):
            assert "pass" in rows.nth(i).inner_text()
        rounds = page.locator("section[aria-labelledby=rounds-heading] tbody tr")
        assert rounds.count() >= 1 and "kept" in page.locator("section[aria-labelledby=rounds-heading]").inner_text()
        assert page.get_by_role("link", name="grid.png").count() == 1
        assert "Signature verified" in page.locator("#certificate-status").inner_text()
        shots.take(page, "request")
        with page.expect_download() as download_info:
            page.locator("#certificate-download").click()
        path = tmp_path / "certificate.json"
        download_info.value.save_as(path)
        document = json.loads(path.read_text())
        public = httpx.get(f"{base}/v1/certificates/public-key").json()["public_key_pem"]
        assert verify_document(document, load_public_key(public)).ok
        assert document["certificate"]["request"]["id"] == request_id

        # 8. The audit trail: filter by the request, verify the chain.
        page.goto(f"{base}/console/audit?subject=erasure:{request_id}")
        assert "erasure.approved" in page.content() and "erasure.submitted" in page.content()
        page.get_by_role("button", name="Verify chain").click()
        assert "Chain intact" in page.locator("#chain-result").inner_text()
        shots.take(page, "audit")

        # 9. A third tenant sees none of it.
        stranger_ctx = browser.new_context()  # type: ignore[attr-defined]
        stranger = stranger_ctx.new_page()
        _sign_in(stranger, base, keys["stranger"])
        for suffix in ("", "/grid.png", "/certificate.json"):
            response = stranger.goto(request_url + suffix)
            assert response is not None and response.status == 404, suffix
        stranger.goto(f"{base}/console/")
        assert request_id not in stranger.content()

        # 10. A form without its CSRF token is refused.
        page.goto(f"{base}/console/audit")
        page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
        page.get_by_role("button", name="Verify chain").click()
        assert "CSRF" in page.content() and "Chain intact" not in page.content()

        # 11. Signing out ends the session: pages (and the old cookie) go to sign-in.
        old_cookies = officer_ctx.cookies()
        page.goto(f"{base}/console/")
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{base}/console/sign-in")
        page.goto(request_url)
        assert page.url.startswith(f"{base}/console/sign-in?next=")
        replay_ctx = browser.new_context()  # type: ignore[attr-defined]
        replay_ctx.add_cookies(old_cookies)
        replay = replay_ctx.new_page()
        replay.goto(f"{base}/console/")
        assert replay.url.startswith(f"{base}/console/sign-in")

        assert not csp_errors, csp_errors
        for ctx in (officer_ctx, approver_ctx, stranger_ctx, replay_ctx):
            ctx.close()
    # No API key in any log line the server wrote.
    log = "\n".join(p.read_text(errors="replace") for p in (tmp_path / "logs").glob("*.log"))
    for key in keys.values():
        assert key not in log and key[4:] not in log
    assert f"/console/requests/{request_id}" in log  # the log is the server's access log indeed

