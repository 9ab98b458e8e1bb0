"""A domain error's extra members become members of its problem+json body: none may be named like the
problem's own members (status, title, ...) — the renderer would fail and the client get a 500."""

from __future__ import annotations

import ast
from pathlib import Path

RESERVED = {"status", "kind", "title", "detail", "request_id", "headers", "request_path", "type", "instance"}
ROOT = Path(__file__).resolve().parents[2]


def test_no_raised_error_carries_a_reserved_member() -> None:
    clashes = []
    for path in [*(ROOT / "core").rglob("*.py"), *(ROOT / "api").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                clashes += [f"{path.relative_to(ROOT)}:{node.lineno} {k.arg}" for k in node.exc.keywords
                            if k.arg in RESERVED]
    assert clashes == []
