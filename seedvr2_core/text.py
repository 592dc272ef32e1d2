"""The text condition: SeedVR2 uses one fixed, precomputed prompt embedding (FACTS.md sections 1, 6).

Only the positive embedding is used (cfg scale 1). It is found, in order: baked into the DiT file
(`positive_conditioning`, ComfyUI's repackaged checkpoints), `embeddings.safetensors` (key
`pos_emb`) or `pos_emb.pt` (read with `weights_only=True`) next to the model or in a given folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import CheckpointError
from .weights.safetensors_file import SafetensorsFile
from .weights.torch_file import load_torch_file

EMBEDDING_FILES = ("embeddings.safetensors", "pos_emb.pt")
OFFICIAL_SHAPE = (58, 5120)


def read_embedding_file(path: str | os.PathLike) -> torch.Tensor:
    """The positive embedding (L, C) stored in `path` (.safetensors key `pos_emb`, or a .pt tensor)."""
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        f = SafetensorsFile(path)
        try:
            if "pos_emb" not in f.entries:
                raise CheckpointError(f"{path} has no tensor named 'pos_emb' (found {sorted(f.entries)[:5]})")
            return f.get("pos_emb")
        finally:
            f.close()
    tensors = load_torch_file(path)
    if len(tensors) != 1:
        raise CheckpointError(f"{path} should hold one embedding tensor, found {len(tensors)} entries")
    return next(iter(tensors.values()))


def find_text_embedding(folders: list[str | os.PathLike], dit=None) -> torch.Tensor:
    """The positive text embedding (L, txt_in_dim): from the DiT file if baked in, else from a folder."""
    baked = (getattr(dit, "text_embeddings", None) or {}).get("pos_emb")
    if baked is not None:
        return _check(baked, dit, "the DiT checkpoint")
    for folder in folders:
        for name in EMBEDDING_FILES:
            path = Path(folder) / name
            if path.is_file():
                return _check(read_embedding_file(path), dit, str(path))
    looked = ", ".join(str(Path(f) / n) for f in folders for n in EMBEDDING_FILES) or "(no folders given)"
    raise CheckpointError(
        f"the SeedVR2 text embedding was not found; looked for {looked}. Put pos_emb.pt or "
        "embeddings.safetensors (from the ByteDance-Seed/SeedVR2-3B repository) next to the model."
    )


def _check(emb: torch.Tensor, dit, where: str) -> torch.Tensor:
    if emb.ndim == 3 and emb.shape[0] == 1:
        emb = emb[0]
    width = getattr(getattr(dit, "config", None), "txt_in_dim", emb.shape[-1])
    if emb.ndim != 2 or emb.shape[-1] != width:
        raise CheckpointError(
            f"text embedding from {where} has shape {tuple(emb.shape)}; this DiT needs (tokens, {width})"
        )
    return emb
