"""Checkpoint readers (safetensors, pth, gguf), key canonicalisation, detection and strict loading."""

from .detect import describe, detect_dit_config
from .loading import check_keys, compute_dtype_policy, materialize
from .qtensor import QuantizedTensor
from .sources import open_source

__all__ = ["QuantizedTensor", "check_keys", "compute_dtype_policy", "describe", "detect_dit_config", "materialize",
           "open_source"]
