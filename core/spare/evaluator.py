"""The type of a job's evaluation, shared by the engine, erase-until-verified and the verification that builds it.

Imports nothing heavy: the verification's modules (core.erasure) name it without loading the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# evaluator(erased_pipeline, base_pipeline, complete=False, judged=None) -> metrics members
# (core.spare.report.EngineMetrics fields). The engine calls it with two arguments; erase-until-verified evaluates
# the round it keeps once more with complete=True where that round's evaluation left something out, handing back
# the judge's evidence it drew then as `judged` (core.spare.rounds._complete_saved).
Evaluator = Callable[..., dict[str, Any]]
