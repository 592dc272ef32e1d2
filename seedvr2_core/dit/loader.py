"""`load_dit`: build the right NaDiT for a checkpoint and fill it strictly."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import torch

from ..config import DIT_CONFIGS, DiTConfig, make_dit_config
from ..errors import CheckpointError, ConfigError, StateDictMismatchError, UnsupportedCheckpointError
from ..weights.detect import describe, detect_dit_config
from ..weights.loading import compute_dtype_policy, materialize
from ..weights.sources import open_source
from .model import NaDiT
from .rope import rope_frequencies

CONFIG_METADATA_KEY = "seedvr2_config"  # JSON of official field names, for non-official sizes


def metadata_config(source) -> dict[str, Any]:
    raw = source.metadata.get(CONFIG_METADATA_KEY)
    if raw is None:
        return {}
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{source.path}: metadata {CONFIG_METADATA_KEY!r} is not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{source.path}: metadata {CONFIG_METADATA_KEY!r} is not a JSON object")
    return cfg


def resolve_dit_config(source, config: str | DiTConfig | Mapping[str, Any] | None) -> DiTConfig:
    """The config for `source`: detected from its shapes, then its metadata, then `config` on top."""
    kind = describe(source)
    if kind != "seedvr2-dit":
        raise UnsupportedCheckpointError(
            f"{source.path} looks like {'a SeedVR2 VAE' if kind == 'seedvr2-vae' else kind}, not a SeedVR2 DiT "
            "(expected keys such as vid_in.proj.weight and blocks.N.attn.proj_qkv.*). "
            "Pick seedvr2_ema_3b / seedvr2_ema_7b (.pth, .safetensors or .gguf)."
        )
    family, fields, detected = _detect(source)
    if isinstance(config, DiTConfig):
        return config
    if isinstance(config, str):
        if config not in DIT_CONFIGS:
            raise UnsupportedCheckpointError(f"unknown DiT variant {config!r}; known: {', '.join(DIT_CONFIGS)}")
        return make_dit_config(config)
    return make_dit_config(family, {**fields, **dict(config)}) if config else detected


def _detect(source) -> tuple[str, dict[str, Any], DiTConfig]:
    """(family, official-named fields, config) from the shapes and metadata of a SeedVR2 DiT reader;
    StateDictMismatchError naming the file when they make no valid config."""
    family, detected = detect_dit_config(source)
    fields = {**detected, **metadata_config(source)}
    try:
        return family, fields, make_dit_config(family, fields)
    except ConfigError as e:
        raise StateDictMismatchError(
            f"{source.path} looks like a SeedVR2 DiT, but the shapes of its tensors give no valid config ({e}). "
            "The file is damaged or from another model."
        ) from None


def fresh_buffers(model: NaDiT) -> dict[str, torch.Tensor]:
    """Buffers computed from the config, whatever the file stores (RoPE frequencies)."""
    freqs = rope_frequencies(model.config)
    return {k: freqs.clone() for k, _ in model.named_buffers() if k.endswith("rope.rope.freqs")}


def load_dit(
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    config: str | DiTConfig | Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    attention: str = "auto",
) -> NaDiT:
    """NaDiT filled from a checkpoint path or state dict; variant detected from the weights.

    `config`: None (detect), a registered name ("seedvr2-3b"), a DiTConfig, or a mapping of official
    field names that overrides the detected family's official values.
    """
    reader = open_source(source)
    try:
        cfg = resolve_dit_config(reader, config)
        with torch.device("meta"):
            model = NaDiT(cfg, attention=attention)
        looks = _detect(reader)[2]
        if cfg == looks:
            what = f"the SeedVR2 DiT it was detected as ({_name(cfg)})"
        else:
            what = f"the requested config ({_name(cfg)}); its weights look like {_name(looks)}"
        materialize(model, reader, what, device, compute_dtype_policy(dtype), fresh_buffers(model))
        model.compute_dtype = dtype
        model.text_embeddings = {n: reader.get_extra(n) for n in reader.extras}
        model.source_path = reader.path
    finally:
        reader.close()
    return model


def _name(cfg: DiTConfig) -> str:
    for name, official in DIT_CONFIGS.items():
        if official == cfg:
            return name
    layout = "3B" if cfg.vid_out_norm else "7B"
    return f"a custom {layout}-layout DiT, {cfg.num_layers} blocks of width {cfg.vid_dim}"
