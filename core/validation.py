"""Input rules every request body and text parameter shares.

Text may not contain NUL (U+0000): Postgres cannot store it in text or JSON columns, and no legitimate
concept, prompt, name or reason holds one. `RequestModel` refuses it anywhere in a body (nested objects and
lists included) with a 422; `SafeText` does the same for a single query parameter.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, model_validator

NUL = "\x00"
NUL_MESSAGE = "text may not contain NUL (\\u0000) characters"


def contains_nul(value: Any, depth: int = 0) -> bool:
    """True when a string anywhere in `value` (dicts, lists, keys included) contains NUL."""
    if isinstance(value, str):
        return NUL in value
    if depth > 32:
        return False
    if isinstance(value, dict):
        return any(contains_nul(k, depth + 1) or contains_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(v, depth + 1) for v in value)
    return False


def _no_nul(value: str) -> str:
    if NUL in value:
        raise ValueError(NUL_MESSAGE)
    return value


SafeText = Annotated[str, AfterValidator(_no_nul)]


class RequestModel(BaseModel):
    """Base of request bodies: any NUL in the input is a 422."""

    @model_validator(mode="before")
    @classmethod
    def _reject_nul(cls, data: Any) -> Any:
        if contains_nul(data):
            raise ValueError(NUL_MESSAGE)
        return data
