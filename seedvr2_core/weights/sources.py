"""Open any supported checkpoint (path or in-memory state dict) as a reader with one interface:
`keys()`, `shape(k)`, `dtype(k)`, `get(k, device, dtype)`, `metadata`, `path`, `close()`."""

from __future__ import annotations

import os
from typing import Mapping

import torch

from ..errors import CheckpointError
from .canonicalize import CanonicalSource
from .safetensors_file import SafetensorsFile
from .torch_file import StateDictSource, TorchFile

TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
GGUF_MAGIC = b"GGUF"


def _sniff(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] == GGUF_MAGIC:
        return "gguf"
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return "torch"
    return "safetensors"


def _format(path: str) -> str:
    lower = path.lower()
    if lower.endswith(SAFETENSORS_SUFFIXES):
        return "safetensors"
    if lower.endswith(TORCH_SUFFIXES):
        return "torch"
    if lower.endswith(".gguf"):
        return "gguf"
    return _sniff(path)


def open_source(source: str | os.PathLike | Mapping[str, torch.Tensor]) -> CanonicalSource:
    """A canonical-key reader over `source` (a checkpoint path or a state dict)."""
    if isinstance(source, Mapping):
        bad = [k for k, v in source.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise CheckpointError(f"state dict entries {bad[:5]} are not tensors")
        return CanonicalSource(StateDictSource(dict(source)))
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise CheckpointError(f"model file {path} does not exist (or is not a file). Check the path.")
    fmt = _format(path)
    if fmt == "safetensors":
        return CanonicalSource(SafetensorsFile(path))
    if fmt == "torch":
        return CanonicalSource(TorchFile(path))
    try:
        from .gguf_file import GGUFFile  # needs the `gguf` package, imported only for .gguf files
    except ImportError as e:
        raise CheckpointError(f"reading {path} needs the `gguf` package ({e}): pip install gguf") from None
    return CanonicalSource(GGUFFile(path))
