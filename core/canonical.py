"""Canonical JSON: RFC 8785 (JCS) for certificates, and the deterministic form the audit chain hashes.

JCS fixes every byte of a JSON text: members sorted by the UTF-16 code units of their names, no whitespace,
strings escaped minimally, numbers written as ECMAScript's `Number.prototype.toString` writes them (`1.0` → `1`,
`1e21` → `1e+21`, `1e-7` → `1e-7`). Any JCS implementation — in any language — yields the same bytes for the
same JSON data, so a signature over them can be checked without Lethe. The formatting is done by the `rfc8785`
package (a complete implementation with the RFC's test vectors); `to_json_data` first reduces a Python value to
the JSON data model the certificate states.
"""

from __future__ import annotations

import json
import math
from typing import Any

import rfc8785

MAX_SAFE_INTEGER = 2**53 - 1  # I-JSON (RFC 7493): integers beyond this cannot round-trip through a double


def canonicalize(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value (raises ValueError for non-JSON data)."""
    return rfc8785.dumps(value)


def to_json_data(value: Any) -> Any:
    """`value` as plain JSON data, exactly as JCS reads it and as it is stored and served.

    Other objects (UUIDs, dates) become their string form; NaN and infinities, which JSON cannot hold, become
    null; integers beyond ±(2**53 − 1) are refused; floats that are whole numbers stay floats in Python but
    serialise as integers (`1.0` → `1`), so the value is round-tripped through its canonical text.
    """
    def clean(item: Any) -> Any:
        if isinstance(item, bool) or item is None or isinstance(item, str):
            return item
        if isinstance(item, int):
            if abs(item) > MAX_SAFE_INTEGER:
                raise ValueError(f"integer {item} is outside the I-JSON range that JCS can represent")
            return item
        if isinstance(item, float):
            return item if math.isfinite(item) else None
        if isinstance(item, dict):
            return {str(k): clean(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [clean(v) for v in item]
        return str(item)

    return json.loads(canonicalize(clean(value)))


def canonical_json(value: Any) -> str:
    """The audit chain's deterministic JSON: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
