"""The surrogates the running round of erase-until-verified trained toward.

The loop may switch a concept's surrogate between rounds (`core.spare.rounds`). A round's check and the job's
evaluator were built for the job's spec before the first round; they read the surrogates in force here, so
that a round's evidence names (and its judge labels among) the surrogate that round trained toward. Outside
the loop nothing is switched and a spec stays as it is.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

Spec = TypeVar("Spec", bound=Any)

_SWITCHED: ContextVar[Mapping[str, str] | None] = ContextVar("lethe_switched_surrogates", default=None)


@contextmanager
def training_toward(switched: Mapping[str, str]) -> Iterator[None]:
    """While a round runs (and is judged): `switched` maps a target to the surrogate this round trained toward
    in place of the spec's."""
    token = _SWITCHED.set(dict(switched))
    try:
        yield
    finally:
        _SWITCHED.reset(token)


def in_force(spec: Spec) -> Spec:
    """`spec` (an ErasureSpec, or any model with `concepts` of target/surrogate) with the running round's
    switched surrogates."""
    switched = _SWITCHED.get()
    if not switched or not any(c.target in switched for c in spec.concepts):
        return spec
    concepts = [c.model_copy(update={"surrogate": switched[c.target]}) if c.target in switched else c
                for c in spec.concepts]
    return spec.model_copy(update={"concepts": concepts})
