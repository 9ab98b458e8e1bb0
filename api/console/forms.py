"""The console's forms as the API's request bodies: a posted form becomes the same pydantic model the JSON API
validates (`ErasureCreate`, `ModelCreate`, `DecisionIn`), and pydantic's errors are placed beside the fields
they are about. The rules are the API's — this module only translates shapes.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from core.erasure.params import PARAMS

M = TypeVar("M", bound=BaseModel)
TOP = "_form"  # errors about the whole form (cross-field rules, service refusals)

# Form field → where it sits in ErasureCreate.
ERASURE_FIELDS: dict[str, str] = {
    "model_id": "model_id",
    "target": "concepts.target",
    "surrogate": "concepts.surrogate",
    "kind": "concepts.kind",
    "prompts": "concepts.prompts",
    "example_image": "concepts.example_images",
    "method": "method",
    "steps": "params.steps",
    "seed": "params.seed",
    "regime": "legal.regime",
    "basis": "legal.basis",
    "external_reference": "legal.external_reference",
    "requester_name": "legal.requester.name",
    "requester_email": "legal.requester.email",
    "requester_organization": "legal.requester.organization",
    "received_at": "legal.received_at",
    "due_at": "legal.due_at",
    "priority": "priority",
    "labels": "labels",
    "concept": "concepts",  # rules across a concept's fields (surrogate equals target ...)
    "legal": "legal",
}
MODEL_FIELDS: dict[str, str] = {"name": "name", "source_uri": "source_uri", "description": "description",
                                "tags": "tags"}
DECISION_FIELDS: dict[str, str] = {"reason": "reason"}

_NAIVE_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$")


def text(form: dict[str, Any], name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def optional(form: dict[str, Any], name: str) -> str | None:
    return text(form, name) or None


def lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def items(value: str) -> list[str]:
    return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]


def utc_datetime(value: str | None) -> str | None:
    """A `datetime-local` value (no offset) is read as UTC, as the form's label says; others pass as given."""
    if value and _NAIVE_LOCAL.match(value):
        return value + ("Z" if value.count(":") == 2 else ":00Z")
    return value


def integer(value: str) -> int | str:
    """A number field as the JSON integer the API expects (the API takes no numeric strings); anything else is
    passed on as typed so the API's own validation names the field."""
    return int(value) if re.fullmatch(r"[+-]?\d{1,18}", value.strip()) else value


def erasure_body(form: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of POST /v1/erasures that this form describes (before any image is uploaded)."""
    concept: dict[str, Any] = {"target": text(form, "target"), "kind": text(form, "kind") or "object",
                               "prompts": lines(text(form, "prompts"))}
    if optional(form, "surrogate") is not None:
        concept["surrogate"] = text(form, "surrogate")
    params: dict[str, Any] = {}
    for name in ("steps", "seed"):
        if optional(form, name) is not None:
            params[name] = integer(text(form, name))
    legal: dict[str, Any] = {"regime": text(form, "regime"), "basis": text(form, "basis")}
    for name in ("external_reference",):
        if optional(form, name) is not None:
            legal[name] = text(form, name)
    for name in ("received_at", "due_at"):
        if optional(form, name) is not None:
            legal[name] = utc_datetime(text(form, name))
    requester = {k: text(form, f"requester_{k}") for k in ("name", "email", "organization")
                 if optional(form, f"requester_{k}") is not None}
    if requester:
        legal["requester"] = requester
    return {
        "model_id": text(form, "model_id"),
        "concepts": [concept],
        "method": text(form, "method") or "spare",
        "params": params,
        "legal": legal,
        "priority": integer(text(form, "priority")) if optional(form, "priority") is not None else 0,
        "labels": items(text(form, "labels")),
    }


def model_body(form: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"name": text(form, "name"), "source_uri": text(form, "source_uri"),
                            "tags": items(text(form, "tags"))}
    if optional(form, "description") is not None:
        body["description"] = text(form, "description")
    return body


def field_errors(exc: ValidationError, fields: dict[str, str]) -> dict[str, list[str]]:
    """pydantic's errors keyed by form field (list indices dropped); unplaceable ones under TOP."""
    by_path = {path: name for name, path in fields.items()}
    out: dict[str, list[str]] = {}
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if not isinstance(p, int)]
        if loc[:1] == ["params"] and loc[1:2] and loc[1] in PARAMS:
            del loc[1]  # the params union's tag (the method), not a form field
        path = ".".join(loc)
        name = TOP
        while path:
            if path in by_path:
                name = by_path[path]
                break
            path = path.rpartition(".")[0]
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        out.setdefault(name, []).append(message)
    return out


def validate(model: type[M], body: dict[str, Any], fields: dict[str, str]) -> tuple[M | None, dict[str, list[str]]]:
    try:
        return model.model_validate(body), {}
    except ValidationError as exc:
        return None, field_errors(exc, fields)
