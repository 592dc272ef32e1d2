"""Key canonicalisation: one table of prefixes and renames, applied to every reader's keys.

Official checkpoints use the module tree's own names. Repackaged files add a host prefix
(ComfyUI's `model.diffusion_model.`, GGUF exports, `module.` from DDP wrappers) or bake the text
embeddings in as `positive_conditioning` / `negative_conditioning` (ComfyUI's native SeedVR2 files,
../shared/HOST.md).
"""

from __future__ import annotations

import torch

from ..errors import CheckpointError

PREFIXES = ("model.diffusion_model.", "diffusion_model.", "module.", "_orig_mod.")

# Tensors that ride along with a DiT but are not its parameters: canonical name -> our name.
EXTRA_TENSORS = {"positive_conditioning": "pos_emb", "negative_conditioning": "neg_emb"}


def canonical_key(key: str) -> str:
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


class CanonicalSource:
    """A reader seen through canonical key names; `extras` holds the ride-along tensors' names."""

    def __init__(self, source):
        self.source = source
        self.path = source.path
        self.metadata = source.metadata
        self._raw: dict[str, str] = {}
        self.extras: dict[str, str] = {}
        for raw in source.keys():
            key = canonical_key(raw)
            names = self.extras if key in EXTRA_TENSORS else self._raw
            name = EXTRA_TENSORS.get(key, key)
            if name in names:
                raise CheckpointError(
                    f"{source.path} holds both {names[name]!r} and {raw!r}, two names of the tensor {key!r}: it "
                    "merges two models or was repackaged wrongly. Pick the original file."
                )
            names[name] = raw

    def keys(self) -> list[str]:
        return list(self._raw)

    def __contains__(self, key: str) -> bool:
        return key in self._raw

    def raw_key(self, key: str) -> str:
        """The name `key` has in the underlying file."""
        return self._raw[key]

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.source.shape(self._raw[key]))

    def dtype(self, key: str) -> torch.dtype:
        return self.source.dtype(self._raw[key])

    def quant_type(self, key: str) -> str | None:
        """GGML block format of a quantised tensor (GGUF files), None for plain tensors."""
        quant_type = getattr(self.source, "quant_type", None)
        return quant_type(self._raw[key]) if quant_type else None

    def get(self, key: str, device="cpu", dtype=None) -> torch.Tensor:
        return self.source.get(self._raw[key], device, dtype)

    def get_extra(self, name: str, device="cpu", dtype=None) -> torch.Tensor | None:
        raw = self.extras.get(name)
        return None if raw is None else self.source.get(raw, device, dtype)

    def close(self) -> None:
        self.source.close()
