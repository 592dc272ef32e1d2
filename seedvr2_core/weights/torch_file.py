"""Reading `.pth` / `.pt` files, only through `torch.load(weights_only=True)`.

The official checkpoints (`seedvr2_ema_3b.pth`, `ema_vae.pth`, ...) are plain `torch.save`d state dicts
and the official loader memory-maps them (FACTS.md section 1). A pickle that needs anything beyond
tensors and plain containers is refused before any of its code can run.
"""

from __future__ import annotations

import os
import pickle
import zipfile

import torch

from ..errors import CheckpointError

# Wrappers some trainers put around the state dict.
WRAPPER_KEYS = ("state_dict", "model", "module", "ema", "params_ema")


def _unwrap(obj: object, path: str) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        if isinstance(obj, dict):
            inner = [obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)]
            if inner:
                obj = inner[0]
                continue
        break
    if isinstance(obj, torch.Tensor):
        return {"": obj}
    raise CheckpointError(
        f"{path} does not hold a state dict of tensors (found {type(obj).__name__}). "
        "Pick a model checkpoint (.safetensors, .pth or .gguf)."
    )


def load_torch_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Safely unpickle a tensor-only checkpoint, memory-mapped when the file format allows."""
    path = os.fspath(path)
    try:
        mmap = zipfile.is_zipfile(path)
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} was refused: unpickling it would need code beyond plain tensors ({e}). "
            "It may be malicious. Use a .safetensors copy of this model instead."
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as e:
        raise CheckpointError(
            f"{path} cannot be read as a PyTorch checkpoint ({type(e).__name__}: {e}). "
            "It may be truncated or damaged: download it again."
        ) from None
    return _unwrap(obj, path)


class StateDictSource:
    """An in-memory state dict behind the same interface as `SafetensorsFile`."""

    def __init__(self, tensors: dict[str, torch.Tensor], path: str = "<state dict>", metadata=None):
        self.path = path
        self.tensors = dict(tensors)
        self.metadata: dict[str, str] = dict(metadata or {})
        self._meta = {k: (tuple(t.shape), t.dtype) for k, t in self.tensors.items()}

    def keys(self) -> list[str]:
        return list(self._meta)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._meta[key][0]

    def dtype(self, key: str) -> torch.dtype:
        return self._meta[key][1]

    def get(self, key: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> torch.Tensor:
        t = self.tensors[key]
        return t.to(device=device, dtype=dtype or t.dtype)

    def close(self) -> None:
        self.tensors.clear()


class TorchFile(StateDictSource):
    """A `.pth` checkpoint; each tensor is copied out once and then forgotten, so the pages of the
    memory-mapped file can be released while the model fills up."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(load_torch_file(path), os.fspath(path))

    def get(self, key: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> torch.Tensor:
        t = self.tensors.pop(key)
        return t.to(device=device, dtype=dtype or t.dtype, copy=True)
