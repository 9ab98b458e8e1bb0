"""Small files with names that say what they hold: no module under core/ grows past 400 lines."""

from __future__ import annotations

from pathlib import Path

import core

LIMIT = 400


def test_no_core_module_exceeds_the_line_limit() -> None:
    root = Path(core.__file__).parent
    modules = sorted(root.rglob("*.py"))
    assert len(modules) > 50, f"found only {len(modules)} modules under {root}"
    long = {str(p.relative_to(root)): n for p in modules if (n := len(p.read_text().splitlines())) > LIMIT}
    assert not long, f"split these by concept (at most {LIMIT} lines each): {long}"
