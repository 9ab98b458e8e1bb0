"""The console's form → API body translation: the API's own models validate, errors land on form fields."""

from __future__ import annotations

from api.console import forms
from core.erasure.schemas import ErasureCreate
from core.registry.schemas import ModelCreate

MODEL = "6f1c1f2e-8a43-4f0e-9d4e-2d1b7c5b9a10"


def _form(**overrides: str) -> dict[str, str]:
    form = {"model_id": MODEL, "target": " Van Gogh ", "kind": "style", "surrogate": "", "prompts": "a\n\n b \n",
            "regime": "gdpr", "basis": "Art. 17", "external_reference": "", "requester_name": "Jane",
            "requester_email": "", "received_at": "2026-11-28T09:00", "due_at": "2026-12-05T09:00:30",
            "priority": "", "labels": "takedown, q4,", "steps": "", "seed": "3", "method": ""}
    form.update(overrides)
    return form


def test_a_complete_form_is_the_api_body() -> None:
    body, errors = forms.validate(ErasureCreate, forms.erasure_body(_form()), forms.ERASURE_FIELDS)
    assert errors == {} and body is not None
    concept = body.concepts[0]
    assert concept.target == "Van Gogh" and concept.surrogate is None and concept.prompts == ["a", "b"]
    assert body.legal is not None and body.legal.requester is not None and body.legal.requester.email is None
    assert body.legal.received_at is not None and body.legal.received_at.utcoffset().total_seconds() == 0
    assert body.legal.due_at is not None and body.legal.due_at.second == 30
    assert body.labels == ["takedown", "q4"] and body.priority == 0 and body.method == "spare"
    assert body.params.given() == {"seed": 3}


def test_errors_are_keyed_by_form_field() -> None:
    _, errors = forms.validate(ErasureCreate, forms.erasure_body(_form(
        model_id="nope", target="", requester_email="x", priority="10", labels="UPPER", steps="0",
        due_at="2026-13-01T00:00", regime="??")), forms.ERASURE_FIELDS)
    assert set(errors) == {"model_id", "target", "requester_email", "priority", "labels", "steps", "due_at",
                           "regime"}
    _, errors = forms.validate(ErasureCreate, forms.erasure_body(_form(surrogate="van gogh")), forms.ERASURE_FIELDS)
    assert list(errors) == ["concept"] and "nothing would be erased" in errors["concept"][0]
    _, errors = forms.validate(ErasureCreate, forms.erasure_body(_form(method="esd", steps="5", seed="")),
                               forms.ERASURE_FIELDS)
    assert errors == {}
    _, errors = forms.validate(ModelCreate, forms.model_body({"name": "", "source_uri": "x", "tags": "a b"}),
                               forms.MODEL_FIELDS)
    assert set(errors) == {"name", "tags"}


def test_only_offsetless_local_times_are_read_as_utc() -> None:
    assert forms.utc_datetime("2026-12-01T09:00") == "2026-12-01T09:00:00Z"
    assert forms.utc_datetime("2026-12-01T09:00:05") == "2026-12-01T09:00:05Z"
    assert forms.utc_datetime("2026-12-01T09:00+02:00") == "2026-12-01T09:00+02:00"
    assert forms.utc_datetime(None) is None
