"""Checkpoint readers (safetensors, pth, gguf), key canonicalisation, detection and strict loading."""

from .detect import describe, detect_dit_config
from .loading import check_keys, compute_dtype_policy, materialize
from .sources import open_source

__all__ = ["check_keys", "compute_dtype_policy", "describe", "detect_dit_config", "materialize", "open_source"]
