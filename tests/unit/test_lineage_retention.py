"""Retention of a model that lost several concepts: the testbed grid's IRA/CRA over the rest of the grid, and
the lineage added to a request's spec for its verification."""

from __future__ import annotations

import itertools

from core.erasure.lineage import with_lineage
from core.evaluation.metrics import GridResult, _target
from core.testbed.canvas import OBJECTS, STYLES


def _grid(lost_object: str, lost_style: str) -> GridResult:
    """Every cell drawn right, except that the lost object and the lost style are never drawn."""
    cells = list(itertools.product(range(len(OBJECTS)), range(len(STYLES))))
    o_lost, s_lost = OBJECTS.index(lost_object), STYLES.index(lost_style)
    return GridResult(
        objs=[o for o, _ in cells], styles=[s for _, s in cells],
        pred_obj=[(o + 1) % len(OBJECTS) if o == o_lost else o for o, _ in cells],
        pred_style=[(s + 1) % len(STYLES) if s == s_lost else s for _, s in cells],
        features_mean=[], seconds=0.0,
    )


def test_rest_of_the_grid_excludes_every_lost_concept() -> None:
    grid = _grid("star", "dotted")
    ua, ira, cra = _target("star", "object", grid)
    assert ua == 1.0 and ira == 1.0
    assert cra < 0.9, "the star's own evaluation counts dotted cells as lost style accuracy"
    forgotten = ([OBJECTS.index("star")], [STYLES.index("dotted")])
    for name, kind in (("star", "object"), ("dotted", "style")):
        ua, ira, cra = _target(name, kind, grid, forgotten)  # type: ignore[arg-type]
        assert (ua, ira, cra) == (1.0, 1.0, 1.0)


def test_lineage_joins_the_spec_once() -> None:
    from core.spare.specs import ConceptSpec, ErasureSpec

    spec = ErasureSpec(concepts=[ConceptSpec(target="dotted", kind="style", surrogate="solid")])
    lineage = [{"target": "star", "kind": "object", "surrogate": "heart", "version": 2, "erasure_id": "x"},
               {"target": "Dotted", "kind": "style", "surrogate": None, "version": 3, "erasure_id": "y"}]
    judged = with_lineage(spec, lineage)
    assert [(c.target, c.kind, c.surrogate) for c in judged.concepts] == [
        ("dotted", "style", "solid"), ("star", "object", "heart")]
    assert with_lineage(spec, []) is spec
