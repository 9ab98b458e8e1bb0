"""Erasure requests in the console: inbox, new takedown, approval queue, the request page and its actions.

Every read and write goes through `core.erasure.service` (and `core.uploads`, `core.certificates`) — the
services behind /v1/erasures — with the signed-in key's principal.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from api.console import forms
from api.console.web import CSRF_FIELD, PREFIX, Console, ConsoleDep, check_csrf, choice, render, see_other, status_for
from api.deps import SessionDep
from api.routers.certificates import CertificateNotIssued
from core import signing
from core.certificates.service import verify_document
from core.db import unit_of_work
from core.erasure import repository, service
from core.erasure.schemas import DecisionIn, ErasureCreate
from core.erasure.states import TERMINAL, RequestStatus
from core.errors import IdempotencyKeyReused, LetheError, ValidationFailed
from core.idempotency import service as idempotency
from core.pagination import DEFAULT_LIMIT
from core.registry import service as registry
from core.registry.models import ModelStatus
from core.spare.report import seconds_split
from core.storage import get_store
from core.storage.base import CHUNK
from core.tenancy.schemas import Scope
from core.uploads import service as uploads

router = APIRouter(prefix=PREFIX)
GRID = "grid.png"
Csrf = Annotated[str, Form(alias=CSRF_FIELD, max_length=200)]


async def _form(request: Request) -> dict[str, Any]:
    form = await request.form(max_files=1, max_fields=64)
    return dict(form)


FormDep = Annotated[dict[str, Any], Depends(_form)]


def _models(session: SessionDep, who: Console) -> list[Any]:
    if not who.can(Scope.models_read):
        return []
    rows, _ = registry.list_page(session, who.principal, limit=100, cursor=None, status=None)
    return rows


@router.get("/", response_class=HTMLResponse)
def inbox(
    request: Request, session: SessionDep, who: ConsoleDep,
    status: Annotated[str | None, Query(max_length=32)] = None,
    model_id: Annotated[str | None, Query(max_length=40)] = None,
    label: Annotated[str | None, Query(max_length=64)] = None,
    external_reference: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    who.require(Scope.erasures_read)
    wanted = choice(RequestStatus, "status", status)
    model_uuid = None
    if model_id:
        try:
            model_uuid = uuid.UUID(model_id)
        except ValueError:
            raise ValidationFailed("model_id is not a model id", field="model_id")
    rows, next_cursor = service.list_page(
        session, who.principal, limit=DEFAULT_LIMIT, cursor=cursor, status=wanted, model_id=model_uuid,
        label=label or None, external_reference=external_reference or None,
    )
    jobs = repository.latest_jobs(session, [r.id for r in rows])
    models = _models(session, who)
    filters = {"status": wanted.value if wanted else "", "model_id": model_id or "", "label": label or "",
               "external_reference": external_reference or ""}
    return render(request, "inbox.html", who, requests=[service.to_out(r, jobs.get(r.id)) for r in rows],
                  next_cursor=next_cursor, filters=filters, statuses=list(RequestStatus), models=models,
                  model_names={m.id: m.name for m in models})


def _new_form(request: Request, session: Any, who: Console, values: dict[str, Any], errors: dict[str, list[str]],
              status_code: int = 200) -> HTMLResponse:
    ready = [m for m in _models(session, who) if m.status == ModelStatus.ready]
    values = {**values, "form_id": values.get("form_id") or uuid.uuid4().hex}
    return render(request, "new_request.html", who, status_code, values=values, errors=errors, models=ready)


@router.get("/requests/new", response_class=HTMLResponse)
def new_request_page(request: Request, session: SessionDep, who: ConsoleDep) -> HTMLResponse:
    who.require(Scope.erasures_write)
    return _new_form(request, session, who, {"kind": "object", "regime": "gdpr", "priority": "0",
                                             "method": "spare"}, {})


@router.post("/requests/new", response_model=None)
def new_request(request: Request, session: SessionDep, who: ConsoleDep, form: FormDep) -> Response:
    check_csrf(request, who, form.get(CSRF_FIELD))
    who.require(Scope.erasures_write)
    settings = request.app.state.settings
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != CSRF_FIELD}
    body, errors = forms.validate(ErasureCreate, forms.erasure_body(form), forms.ERASURE_FIELDS)
    image = form.get("example_image")
    data = b""
    if image is not None and not isinstance(image, str) and image.filename:
        data = image.file.read(settings.max_upload_bytes + 1)
        try:
            if len(data) > settings.max_upload_bytes:
                raise ValidationFailed(f"the image exceeds {settings.max_upload_bytes} bytes")
            uploads.inspect_image(data, settings.max_image_pixels)
        except LetheError as exc:
            errors.setdefault("example_image", []).append(exc.detail)
    if errors or body is None:
        return _new_form(request, session, who, values, errors, 422)
    try:
        with unit_of_work(request.app.state.engine) as tx:
            # Each form carries a one-time id: a second submission of the same form (a double click, a reload
            # of the POST) shows the request the first one filed, through the API's idempotency records.
            once = _form_once(request, tx, who, forms.text(form, "form_id"), body, hashlib.sha256(data).hexdigest())
            if isinstance(once, idempotency.Replay):
                return see_other(str(once.body["location"]))
            if data:
                upload = uploads.create(tx, settings, who.principal, data, image.filename)  # type: ignore[union-attr]
                concept = body.concepts[0].model_copy(update={"example_images": [upload.id]})
                body = body.model_copy(update={"concepts": [concept]})
            submitted = service.submit(tx, who.principal, body)
            location = f"{PREFIX}/requests/{submitted.request['id']}"
            if once is not None:
                idempotency.finish(tx, once, 303, {"location": location}, {})
    except IdempotencyKeyReused:
        message = "this form was already used to file a request; open a new form to file another"
        return _new_form(request, session, who, values, {forms.TOP: [message]}, 422)
    except LetheError as exc:
        field = "model_id" if exc.kind.startswith("model") or exc.detail.startswith("model") else forms.TOP
        return _new_form(request, session, who, values, {field: [exc.detail]}, status_for(exc))
    return see_other(location)


def _form_once(request: Request, session: Any, who: Console, form_id: str, body: ErasureCreate,
               image_sha256: str) -> idempotency.Fresh | idempotency.Claimed | idempotency.Replay | None:
    if not form_id:
        return None
    fp = idempotency.fingerprint("POST", request.url.path, {"body": body.model_dump(mode="json"),
                                                             "image": image_sha256})
    return idempotency.start(session, tenant_id=who.principal.tenant_id, key=f"console-form:{form_id[:64]}", fp=fp,
                             method="POST", path=request.url.path,
                             ttl_hours=request.app.state.settings.idempotency_ttl_hours)


@router.get("/approvals", response_class=HTMLResponse)
def approvals(
    request: Request, session: SessionDep, who: ConsoleDep,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    who.require(Scope.erasures_read)
    rows, next_cursor = service.list_page(session, who.principal, limit=DEFAULT_LIMIT, cursor=cursor,
                                          status=RequestStatus.awaiting_approval)
    models = _models(session, who)
    return render(request, "approvals.html", who, requests=[service.to_out(r, None) for r in rows],
                  next_cursor=next_cursor, model_names={m.id: m.name for m in models})


def _verification(metrics: dict[str, Any] | None) -> list[dict[str, Any]]:
    checks = (metrics or {}).get("verification")
    rows = []
    for name, check in (checks or {}).items() if isinstance(checks, dict) else ():
        if not isinstance(check, dict):
            continue
        if "min" in check:
            threshold = f"≥ {check['min']:.3f}" if isinstance(check["min"], int | float) else f"≥ {check['min']}"
        elif "max" in check:
            threshold = f"≤ {check['max']:.3f}" if isinstance(check["max"], int | float) else f"≤ {check['max']}"
        else:
            threshold = "—"
        value = check.get("value")
        rows.append({"name": name, "value": f"{value:.3f}" if isinstance(value, int | float) else str(value),
                     "threshold": threshold, "passed": check.get("passed") is True})
    return rows


def _rounds(metrics: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Erase until verified's rounds as the request page lists them: levers, UA per concept, the lowest retention,
    seconds (with the check's and the evaluation's share), outcome and why the verification refused a round."""
    history = ((metrics or {}).get("rounds") or {}).get("history")
    rows = []
    for row in history if isinstance(history, list) else ():
        if not isinstance(row, dict):
            continue
        ua = {k: v for k, v in (row.get("ua") or {}).items() if isinstance(v, int | float)}
        kept = [v for v in (row.get("retention") or {}).values() if isinstance(v, int | float)]
        rows.append({
            "round": row.get("round"),
            "levers": " + ".join(row.get("levers") or []) or "defaults",
            "ua": ", ".join(f"{k} {v:.3f}" for k, v in ua.items()) or "—",
            "retention": f"{min(kept):.3f}" if kept else "—",
            "seconds": f"{float(row.get('seconds') or 0):.0f} s",
            "split": seconds_split(row.get("timings_s")),
            "outcome": row.get("outcome") or "—",
            "refused": row.get("refused"),
        })
    return rows


def _certificate_check(request: Request, certificate: dict[str, Any] | None) -> dict[str, Any] | None:
    if certificate is None:
        return None
    public = signing.private_key(request.app.state.settings).public_key()
    result = verify_document(certificate, public)
    return {"ok": result.ok, "reason": result.reason, "id": (certificate.get("certificate") or {}).get("id")}


def _live(request: Request, session: Any, who: Console, request_id: uuid.UUID) -> dict[str, Any]:
    found = service.get(session, who.principal, request_id)
    job = repository.latest_jobs(session, [found.id]).get(found.id)
    return {"found": found, "job": job, "out": service.to_out(found, job), "terminal": found.status in TERMINAL}


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_page(request: Request, request_id: uuid.UUID, session: SessionDep, who: ConsoleDep) -> HTMLResponse:
    who.require(Scope.erasures_read)
    live = _live(request, session, who, request_id)
    found, job = live["found"], live["job"]
    # The page offers downloads: links are issued (and audited) only once the request has succeeded.
    artifacts = (service.issue_artifact_links(session, request.app.state.settings, who.principal, found, job).artifacts
                 if service.artifacts(session, found, job) else [])
    model = None
    if who.can(Scope.models_read):
        try:
            model = registry.get(session, who.principal, found.model_id)
        except LetheError:
            model = None
    return render(request, "request.html", who, r=live["out"], terminal=live["terminal"], model=model,
                  artifacts=artifacts, has_grid=any(a.name == GRID for a in artifacts),
                  checks=_verification(found.metrics), rounds=_rounds(found.metrics),
                  certificate=_certificate_check(request, found.certificate))


@router.get("/requests/{request_id}/live", response_class=HTMLResponse)
def request_live(request: Request, request_id: uuid.UUID, session: SessionDep, who: ConsoleDep) -> HTMLResponse:
    """The live part of the request page (status, stage, progress, attempts), polled by console.js."""
    who.require(Scope.erasures_read)
    live = _live(request, session, who, request_id)
    return render(request, "_live.html", who, r=live["out"], terminal=live["terminal"])


@router.get("/requests/{request_id}/grid.png")
def request_grid(request: Request, request_id: uuid.UUID, session: SessionDep, who: ConsoleDep) -> Response:
    who.require(Scope.erasures_read)
    artifact = service.succeeded_artifact(session, who.principal, request_id, GRID)
    reader = get_store(request.app.state.settings).open(artifact.key, expected_sha256=artifact.sha256)

    def chunks() -> Iterator[bytes]:
        with reader:  # the sha256 is checked at EOF: a corrupt object ends the transfer early
            pending = reader.read(CHUNK)
            while pending:
                block = reader.read(CHUNK)
                yield pending
                pending = block

    return StreamingResponse(chunks(), media_type="image/png")


@router.get("/requests/{request_id}/certificate.json")
def request_certificate(request_id: uuid.UUID, session: SessionDep, who: ConsoleDep) -> Response:
    who.require(Scope.erasures_read)
    found = service.get(session, who.principal, request_id)
    if found.certificate is None:
        raise CertificateNotIssued(f"erasure request {request_id} has no certificate (status {found.status.value})")
    body = json.dumps(found.certificate, indent=2, sort_keys=True)
    return Response(body, media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="certificate-{request_id}.json"'})


def _act(request: Request, who: Console, request_id: uuid.UUID, action: str, reason: str = "") -> RedirectResponse:
    with unit_of_work(request.app.state.engine) as session:
        if action == "cancel":
            service.cancel(session, who.principal, request_id)
        elif action == "approve":
            service.approve(session, who.principal, request_id)
        else:
            service.reject(session, who.principal, request_id, reason)
    return see_other(f"{PREFIX}/requests/{request_id}")


@router.post("/requests/{request_id}/cancel")
def cancel(request: Request, request_id: uuid.UUID, who: ConsoleDep, csrf_token: Csrf = "") -> RedirectResponse:
    check_csrf(request, who, csrf_token)
    who.require(Scope.erasures_write)
    return _act(request, who, request_id, "cancel")


@router.post("/requests/{request_id}/approve")
def approve(request: Request, request_id: uuid.UUID, who: ConsoleDep, csrf_token: Csrf = "") -> RedirectResponse:
    check_csrf(request, who, csrf_token)
    who.require(Scope.erasures_approve)
    return _act(request, who, request_id, "approve")


@router.post("/requests/{request_id}/reject")
def reject(
    request: Request, request_id: uuid.UUID, who: ConsoleDep, csrf_token: Csrf = "",
    reason: Annotated[str, Form(max_length=4000)] = "",
) -> RedirectResponse:
    check_csrf(request, who, csrf_token)
    who.require(Scope.erasures_approve)
    decision, errors = forms.validate(DecisionIn, {"reason": reason.strip()}, forms.DECISION_FIELDS)
    if decision is None:
        raise ValidationFailed("give a reason for the rejection: " + "; ".join(errors.get("reason", [])))
    return _act(request, who, request_id, "reject", decision.reason)

