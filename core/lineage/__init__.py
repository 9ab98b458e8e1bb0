"""The ML side of model lineage: one LoRA relative to v1 that reproduces a chain of erasures.

numpy only, no torch and no safetensors package: default-queue workers and the API (whose image has neither)
build and check cumulative adapters.
"""

from core.lineage.cumulative import (
    AdapterCombineError,
    CombinedAdapter,
    adapter_is_exact,
    combine_adapters,
)

__all__ = ["AdapterCombineError", "CombinedAdapter", "adapter_is_exact", "combine_adapters"]
