"""Erasure methods by name: each is its own module behind `ErasureMethod` (core.spare.methods.base)."""

from __future__ import annotations

from core.spare.errors import ErasureInputError
from core.spare.methods.base import ErasureMethod, MethodOutcome, MethodRun
from core.spare.methods.esd import EsdMethod
from core.spare.methods.spare import SpareMethod

METHODS: dict[str, ErasureMethod] = {method.name: method for method in (SpareMethod(), EsdMethod())}

__all__ = ["METHODS", "ErasureMethod", "MethodOutcome", "MethodRun", "method_for"]


def method_for(name: str) -> ErasureMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise ErasureInputError(f"unknown erasure method {name!r}; known: {', '.join(METHODS)}") from None
