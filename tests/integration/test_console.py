"""The web console over HTTP (no browser): sessions, CSRF, scopes, tenants, validation, headers, rate limits.

The same flows in a real browser, with an erasure that runs to the end: tests/e2e/test_console_browser.py.
"""

from __future__ import annotations

import io
import re
import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select, update

from core.audit.models import AuditEvent
from core.console.models import ConsoleSession
from core.db import unit_of_work
from core.erasure.models import ErasureRequest
from core.erasure.states import RequestStatus
from core.tenancy import service as tenancy
from core.timeutil import utcnow
from tests.api_support import ApiEnv, api, build_env  # noqa: F401

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _client(env: ApiEnv) -> TestClient:
    """A browser of its own (own cookie jar) on the same app."""
    return TestClient(env.client.app, raise_server_exceptions=False)


def sign_in(c: TestClient, key: str) -> str:
    page = c.get("/console/sign-in")
    assert page.status_code == 200
    token = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    r = c.post("/console/sign-in", data={"api_key": key, "csrf_token": token, "next": "/console/"},
               follow_redirects=False)
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/console" in cookie
    assert key not in cookie
    assert ("secure" in cookie.lower()) == (c.base_url.scheme == "https")
    return csrf_of(c, r.headers["location"])


def csrf_of(c: TestClient, path: str) -> str:
    page = c.get(path)
    assert page.status_code == 200, page.text
    return CSRF.search(page.text).group(1)  # type: ignore[union-attr]


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def new_request_form(model_id: uuid.UUID, csrf: str, **overrides: str) -> dict[str, str]:
    form = {"csrf_token": csrf, "model_id": str(model_id), "target": "circle", "kind": "object",
            "prompts": "a circle on a table\na red circle", "regime": "gdpr", "basis": "Art. 17 GDPR",
            "external_reference": "TICKET-4711", "requester_name": "Jane Roe", "requester_email": "jane@example.com",
            "due_at": "2026-12-24T12:00", "priority": "3", "labels": "takedown, q4", "steps": "5", "seed": "1"}
    form.update(overrides)
    return form


def test_sign_in_pages_and_sign_out(api: ApiEnv) -> None:  # noqa: F811
    key = api.key("acme", "admin", name="Ada Officer")
    c = _client(api)
    # Signed out: every page sends the person to sign-in, and back afterwards.
    r = c.get("/console/models", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/sign-in?next=/console/models"
    bad = c.post("/console/sign-in", data={"api_key": "lth_nope", "csrf_token": CSRF.search(
        c.get("/console/sign-in").text).group(1)}, follow_redirects=False)  # type: ignore[union-attr]
    assert bad.status_code == 401 and "Sign-in failed" in bad.text and "lethe_console=" not in bad.headers.get(
        "set-cookie", "")
    csrf = sign_in(c, key)
    pages = ["/console/", "/console/requests/new", "/console/approvals", "/console/models", "/console/audit"]
    for path in pages:
        r = c.get(path)
        assert r.status_code == 200, (path, r.text)
        assert "Ada Officer" in r.text and key not in r.text
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "<script>" not in r.text and " on" + "click=" not in r.text and "style=" not in r.text
        assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    static = c.get("/console/static/console.js")
    assert static.status_code == 200 and "data-poll" in static.text

    out = c.post("/console/sign-out", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/console/sign-in"
    # The old cookie is dead server-side, even when a client keeps sending it.
    with unit_of_work(api.engine) as s:
        row = s.scalars(select(ConsoleSession)).one()
        assert row.revoked_reason == "signed_out"
    c.cookies.set("lethe_console", "x" * 43, path="/console")
    assert c.get("/console/", follow_redirects=False).headers["location"].startswith("/console/sign-in")
    # A form posted by an ended session goes to sign-in too (and changes nothing).
    r = c.post("/console/audit/verify", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/sign-in?next=/console/"
    with unit_of_work(api.engine) as s:
        actions = list(s.scalars(select(AuditEvent.action).where(AuditEvent.action.like("console.%"))))
    assert actions == ["console.signed_in", "console.signed_out"]


def test_forms_without_a_valid_csrf_token_are_refused(api: ApiEnv) -> None:  # noqa: F811
    c = _client(api)
    csrf = sign_in(c, api.key("acme", "admin"))
    model_id = api.ready_model("acme")
    for data in ({}, {"csrf_token": "0" * 64}):
        r = c.post("/console/requests/new", data={**new_request_form(model_id, ""), **data})
        assert r.status_code == 403 and "CSRF" in r.text
        assert c.post("/console/sign-out", data=data).status_code == 403
        assert c.post("/console/audit/verify", data=data).status_code == 403
    with unit_of_work(api.engine) as s:
        assert s.scalars(select(ErasureRequest)).first() is None
    # Another session's token is not this session's token.
    other = _client(api)
    other_csrf = sign_in(other, api.key("acme", "admin"))
    assert other_csrf != csrf
    assert c.post("/console/audit/verify", data={"csrf_token": other_csrf}).status_code == 403
    assert c.post("/console/audit/verify", data={"csrf_token": csrf}).status_code == 200
    # The sign-in form has its own token.
    fresh = _client(api)
    fresh.get("/console/sign-in")
    r = fresh.post("/console/sign-in", data={"api_key": api.key("acme", "admin"), "csrf_token": "forged"},
                   follow_redirects=False)
    assert r.status_code == 403 and "lethe_console=" not in r.headers.get("set-cookie", "")


def test_new_takedown_validation_errors_sit_beside_their_fields(api: ApiEnv) -> None:  # noqa: F811
    c = _client(api)
    csrf = sign_in(c, api.key("acme", "admin"))
    model_id = api.ready_model("acme")
    r = c.post("/console/requests/new", data=new_request_form(
        model_id, csrf, target="", requester_email="not-an-email", priority="12", labels="Bad Label",
        surrogate="", steps="0"))
    assert r.status_code == 422
    for field in ("target", "requester_email", "priority", "labels", "steps"):
        assert f'id="{field}-error"' in r.text, field
        assert re.search(rf'id="{field}"[^>]*aria-describedby="{field}-error"', r.text), field
    assert 'value="Jane Roe"' in r.text  # what was typed is kept
    # The API's rule for a surrogate equal to the target, through the console.
    r = c.post("/console/requests/new", data=new_request_form(model_id, csrf, surrogate="Circle"))
    assert r.status_code == 422 and "nothing would be erased" in r.text
    # An image that is not an image is refused beside the upload field.
    r = c.post("/console/requests/new", data=new_request_form(model_id, csrf),
               files={"example_image": ("x.png", b"not an image", "image/png")})
    assert r.status_code == 422 and 'id="example_image-error"' in r.text
    # The service's refusals land beside the model field: another tenant's model (404), a pending one (409).
    r = c.post("/console/requests/new", data=new_request_form(api.ready_model("globex"), csrf))
    assert r.status_code == 404 and 'id="model_id-error"' in r.text
    folder = api.model_root / "pending-model"
    folder.mkdir()
    c.post("/console/models", data={"csrf_token": csrf, "name": "pending-model", "source_uri": folder.as_uri()})
    with unit_of_work(api.engine) as s:
        from core.registry.models import RegisteredModel

        pending = s.scalars(select(RegisteredModel.id).where(RegisteredModel.name == "pending-model")).one()
    r = c.post("/console/requests/new", data=new_request_form(pending, csrf))
    assert r.status_code == 409 and 'id="model_id-error"' in r.text and "pending" in r.text
    with unit_of_work(api.engine) as s:
        assert s.scalars(select(ErasureRequest)).first() is None


def test_takedown_inbox_search_approval_and_tenants(api: ApiEnv) -> None:  # noqa: F811
    submitter_key = api.key("acme", "erasures:write,erasures:read,models:read,audit:read", require_approval=True,
                            name="Sam Submitter")
    approver_key = api.key("acme", "erasures:read,erasures:approve", name="Alex Approver")
    model_id = api.ready_model("acme")
    submitter = _client(api)
    csrf = sign_in(submitter, submitter_key)
    r = submitter.post("/console/requests/new", data=new_request_form(model_id, csrf),
                       files={"example_image": ("evidence.png", png(), "image/png")}, follow_redirects=False)
    assert r.status_code == 303, r.text
    request_path = r.headers["location"]
    rid = uuid.UUID(request_path.rsplit("/", 1)[1])
    # The same form sent again (a double click) files nothing new: it leads to the request the first one filed.
    form_id = "f" * 32
    first = submitter.post("/console/requests/new", data={**new_request_form(model_id, csrf), "form_id": form_id},
                           follow_redirects=False)
    again = submitter.post("/console/requests/new", data={**new_request_form(model_id, csrf), "form_id": form_id},
                           follow_redirects=False)
    assert first.status_code == again.status_code == 303 and first.headers["location"] == again.headers["location"]
    edited = submitter.post("/console/requests/new", data={**new_request_form(model_id, csrf, target="square"),
                                                           "form_id": form_id})
    assert edited.status_code == 422 and "already used" in edited.text
    with unit_of_work(api.engine) as s:
        assert len(list(s.scalars(select(ErasureRequest.id)))) == 2
    with unit_of_work(api.engine) as s:
        row = s.get(ErasureRequest, rid)
        assert row is not None and row.status == RequestStatus.awaiting_approval
        assert row.concepts[0]["example_images"] and row.labels == ["takedown", "q4"] and row.priority == 3
        assert row.legal["due_at"] == "2026-12-24T12:00:00Z" and row.params == {"steps": 5, "seed": 1}
    # Inbox: search by external reference (substring, any case), label, status.
    for query, found in [("external_reference=ticket-47", True), ("external_reference=OTHER", False),
                         ("label=q4", True), ("label=nope", False), ("status=awaiting_approval", True),
                         ("status=queued", False), (f"model_id={model_id}", True),
                         ("status=&model_id=&label=&external_reference=", True)]:
        page = submitter.get(f"/console/?{query}")
        assert page.status_code == 200 and (str(rid) in page.text) is found, query
    # Four eyes: the submitter has no approve button and cannot approve by posting.
    queue = submitter.get("/console/approvals")
    assert "Waiting for a second person" in queue.text and f"/requests/{rid}/approve" not in queue.text
    assert submitter.post(f"{request_path}/approve", data={"csrf_token": csrf}).status_code == 403
    # The approver approves from the queue.
    approver = _client(api)
    approver_csrf = sign_in(approver, approver_key)
    assert f"/requests/{rid}/approve" in approver.get("/console/approvals").text
    assert approver.get("/console/requests/new").status_code == 403  # no erasures:write
    assert approver.post(f"{request_path}/reject", data={"csrf_token": approver_csrf, "reason": " "}).status_code == 422
    r = approver.post(f"{request_path}/approve", data={"csrf_token": approver_csrf}, follow_redirects=False)
    assert r.status_code == 303
    page = approver.get(request_path)
    assert "queued" in page.text and "Sam Submitter" in page.text and "Alex Approver" in page.text
    # A third tenant sees none of it: 404 for the page, its live part, grid and certificate; empty lists.
    stranger = _client(api)
    stranger_csrf = sign_in(stranger, api.key("globex", "admin"))
    for suffix in ("", "/live", "/grid.png", "/certificate.json"):
        assert stranger.get(request_path + suffix).status_code == 404, suffix
    assert stranger.post(f"{request_path}/cancel", data={"csrf_token": stranger_csrf}).status_code == 404
    assert str(rid) not in stranger.get("/console/").text
    assert "No events match." in stranger.get(f"/console/audit?subject=erasure:{rid}").text
    # Cancel through the console.
    r = submitter.post(f"{request_path}/cancel", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    with unit_of_work(api.engine) as s:
        assert s.get(ErasureRequest, rid).status == RequestStatus.cancelled  # type: ignore[union-attr]


def test_models_page_registers_and_shows_validation_errors(api: ApiEnv) -> None:  # noqa: F811
    c = _client(api)
    csrf = sign_in(c, api.key("acme", "models:read,models:write"))
    folder = api.model_root / "my-model"
    folder.mkdir()
    r = c.post("/console/models", data={"csrf_token": csrf, "name": "my model", "source_uri": folder.as_uri(),
                                        "tags": "sd15, prod"}, follow_redirects=False)
    assert r.status_code == 303
    page = c.get("/console/models")
    assert "my model" in page.text and "pending" in page.text
    again = c.post("/console/models", data={"csrf_token": csrf, "name": "my model", "source_uri": folder.as_uri()})
    assert again.status_code == 409 and 'id="name-error"' in again.text
    outside = c.post("/console/models", data={"csrf_token": csrf, "name": "x", "source_uri": "file:///etc"})
    assert outside.status_code == 422 and 'id="source_uri-error"' in outside.text
    empty = c.post("/console/models", data={"csrf_token": csrf, "name": "", "source_uri": ""})
    assert empty.status_code == 422 and 'id="name-error"' in empty.text
    # Scopes decide: no erasures:read, no inbox.
    assert c.get("/console/").status_code == 403


def test_sessions_end_when_idle_revoked_or_their_key_is_revoked(api: ApiEnv) -> None:  # noqa: F811
    key = api.key("acme", "admin")
    c = _client(api)
    sign_in(c, key)
    with unit_of_work(api.engine) as s:
        s.execute(update(ConsoleSession).values(
            last_seen_at=utcnow() - timedelta(minutes=api.settings.console_idle_timeout_minutes + 1)))
    r = c.get("/console/audit", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/sign-in?next=/console/audit"
    with unit_of_work(api.engine) as s:
        assert s.scalars(select(ConsoleSession.revoked_reason)).one() == "idle"
        assert s.scalars(select(AuditEvent).where(AuditEvent.action == "console.session_expired")).first()
    # Poll requests get a 401 (the script sends the page to sign-in), not a redirect.
    assert c.get(f"/console/requests/{uuid.uuid4()}/live", headers={"X-Console-Poll": "1"}).status_code == 401

    # Operator revocation from the CLI's service; and a revoked API key ends its sessions.
    from core.console import service as console

    sign_in(c, key)
    with unit_of_work(api.engine) as s:
        open_id = s.scalars(select(ConsoleSession.id).where(ConsoleSession.revoked_at.is_(None))).one()
        console.revoke(s, open_id)
    assert c.get("/console/", follow_redirects=False).status_code == 303
    sign_in(c, key)
    with unit_of_work(api.engine) as s:
        tenancy.revoke_key(s, key[:14])
    assert c.get("/console/", follow_redirects=False).status_code == 303
    with unit_of_work(api.engine) as s:
        reasons = sorted(s.scalars(select(ConsoleSession.revoked_reason)))
    assert reasons == ["idle", "key_revoked", "revoked"]


def test_console_shares_the_api_rate_limit(pg_url: str) -> None:
    for env in build_env(pg_url, rate_limit_per_minute=10):  # bucket of 10, refilled at 1 per 6 s
        key = env.key("acme", "admin")
        c = _client(env)
        sign_in(c, key)  # sign-in and the inbox it lands on took 2 tokens
        statuses = [c.get("/console/audit").status_code for _ in range(6)]
        api_statuses = [env.client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code
                        for _ in range(4)]
        assert 429 in statuses + api_statuses and statuses[0] == 200
        limited = c.get("/console/audit")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


@pytest.mark.parametrize("path", ["/console/requests/not-a-uuid", "/console/nope"])
def test_bad_paths_are_html_errors_not_500(api: ApiEnv, path: str) -> None:  # noqa: F811
    c = _client(api)
    sign_in(c, api.key("acme", "admin"))
    r = c.get(path)
    assert r.status_code in (404, 422) and r.headers["content-type"].startswith("text/html")


def test_cli_lists_and_revokes_sessions(api: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from typer.testing import CliRunner

    from core.cli.app import app
    from core.config import get_settings

    monkeypatch.setenv("LETHE_DATABASE_URL", api.settings.database_url)
    get_settings.cache_clear()
    key = api.key("acme", "admin", name="Ada Officer")
    first, second = _client(api), _client(api)
    sign_in(first, key)
    sign_in(second, key)
    listed = CliRunner().invoke(app, ["console", "sessions"])
    assert listed.exit_code == 0 and listed.output.count("Ada Officer") == 2 and key not in listed.output
    session_id = listed.output.split()[0]
    assert CliRunner().invoke(app, ["console", "revoke", session_id]).exit_code == 0
    assert CliRunner().invoke(app, ["console", "revoke", session_id]).exit_code == 1  # already ended
    assert CliRunner().invoke(app, ["console", "revoke", "--key", key[:14]]).output.strip() == "revoked 1 session(s)"
    for c in (first, second):
        assert c.get("/console/", follow_redirects=False).status_code == 303
    assert CliRunner().invoke(app, ["console", "revoke"]).exit_code == 1


def test_inbox_marks_overdue_requests_in_words(api: ApiEnv) -> None:  # noqa: F811
    from tests.api_support import erasure_body

    h = api.auth("acme", "admin")
    model_id = api.ready_model("acme")
    late = api.client.post("/v1/erasures", json=erasure_body(model_id), headers=h).json()["id"]
    on_time = api.client.post("/v1/erasures", json=erasure_body(model_id), headers=h).json()["id"]
    with unit_of_work(api.engine) as s:  # what the sweeper sets once due_at has passed
        s.execute(update(ErasureRequest).where(ErasureRequest.id == uuid.UUID(late)).values(overdue=True))
    c = _client(api)
    sign_in(c, api.key("acme", "admin"))
    page = c.get("/console/").text
    rows = {rid: re.search(rf'<tr[^>]*>\s*<th scope="row"><a href="/console/requests/{rid}">.*?</tr>', page, re.S)
            for rid in (late, on_time)}
    assert rows[late] and 'class="overdue"' in rows[late].group(0) and "Overdue" in rows[late].group(0)
    assert rows[on_time] and "overdue" not in rows[on_time].group(0).lower()


def test_cookie_is_secure_over_tls(api: ApiEnv) -> None:  # noqa: F811
    c = TestClient(api.client.app, base_url="https://testserver", raise_server_exceptions=False)
    sign_in(c, api.key("acme", "admin"))  # asserts the Secure attribute
    assert c.get("/console/audit").status_code == 200


def test_inbox_pages_with_a_cursor_and_keeps_filters(api: ApiEnv) -> None:  # noqa: F811
    from tests.api_support import erasure_body

    h = api.auth("acme", "admin")
    model_id = api.ready_model("acme")
    ids = [api.client.post("/v1/erasures", json=erasure_body(model_id, labels=["bulk"]), headers=h).json()["id"]
           for _ in range(52)]
    c = _client(api)
    sign_in(c, api.key("acme", "admin"))
    seen: list[str] = []
    path: str | None = "/console/?label=bulk"
    while path:
        page = c.get(path)
        assert page.status_code == 200
        seen += re.findall(r'<th scope="row"><a href="/console/requests/([0-9a-f-]{36})"', page.text)
        nxt = re.search(r'<a rel="next" href="([^"]+)"', page.text)
        path = nxt.group(1).replace("&amp;", "&") if nxt else None
        assert path is None or "label=bulk" in path
    assert seen == ids[::-1]
