"""Typed model configurations; the official ones are registered by name.

Field names follow the official SeedVR2 configs (`configs_3b/main.yaml`, `configs_7b/main.yaml`,
FACTS.md sections 3.1 and 3.2). The two DiT sizes are one model with different settings:

| setting            | seedvr2-3b (`models/dit_v2`)        | seedvr2-7b (`models/dit`)          |
|--------------------|-------------------------------------|------------------------------------|
| blocks             | 10 per-stream ("mm"), then shared   | all per-stream                     |
| last block         | text stream not modulated, no MLP   | ordinary                           |
| MLP                | SwiGLU                              | GELU(tanh)                         |
| RoPE               | `mmrope3d` on video and text        | `rope3d` on video only             |
| output             | RMSNorm + modulation, then proj     | proj                               |
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ConfigError

MLP_TYPES = ("swiglu", "normal")
ROPE_TYPES = ("mmrope3d", "rope3d")


@dataclass(frozen=True)
class DiTConfig:
    """One NaDiT; the defaults are SeedVR2-3B."""

    vid_in_channels: int = 33
    vid_out_channels: int = 16
    vid_dim: int = 2560
    txt_in_dim: int = 5120
    txt_dim: int = 2560
    emb_dim: int = 15360
    heads: int = 20
    head_dim: int = 128
    expand_ratio: int = 4
    norm_eps: float = 1e-5
    qk_bias: bool = False
    patch_size: tuple[int, int, int] = (1, 2, 2)
    num_layers: int = 32
    # Blocks [0, mm_layers) keep separate video/text weights; later blocks share one set ("all").
    mm_layers: int = 10
    mlp_type: str = "swiglu"
    rope_type: str = "mmrope3d"
    # Head dims rotated: each of the t, h, w axes gets rope_dim // 3 of them (rounded down to pairs).
    rope_dim: int = 128
    # RMSNorm with weight + modulation before the output projection (3B only).
    vid_out_norm: bool = True
    # The last block's text stream is normalised but not modulated and has no MLP (3B only).
    last_layer_vid_only: bool = True
    window: tuple[int, int, int] = (4, 3, 3)
    # Layer i uses window_method[i % len(window_method)].
    window_method: tuple[str, ...] = ("720pwin_by_size_bysize", "720pswin_by_size_bysize")

    def __post_init__(self) -> None:
        if self.mlp_type not in MLP_TYPES:
            raise ConfigError(f"mlp_type {self.mlp_type!r} is not one of {MLP_TYPES}")
        if self.rope_type not in ROPE_TYPES:
            raise ConfigError(f"rope_type {self.rope_type!r} is not one of {ROPE_TYPES}")
        if self.emb_dim != 6 * self.vid_dim:
            raise ConfigError(f"emb_dim must be 6 * vid_dim = {6 * self.vid_dim}, got {self.emb_dim}")
        if self.txt_dim != self.vid_dim:
            raise ConfigError(f"txt_dim must equal vid_dim ({self.vid_dim}), got {self.txt_dim}")
        if not 0 <= self.mm_layers <= self.num_layers:
            raise ConfigError(f"mm_layers {self.mm_layers} must lie in [0, num_layers={self.num_layers}]")
        if 2 * ((self.rope_dim // 3) // 2) * 3 > self.head_dim:
            raise ConfigError(f"rope_dim {self.rope_dim} rotates more than head_dim {self.head_dim} dims")
        for m in self.window_method:
            if m not in WINDOW_METHODS:
                raise ConfigError(f"window_method {m!r} is not one of {sorted(WINDOW_METHODS)}")

    @property
    def inner_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def mlp_hidden_dim(self) -> int:
        if self.mlp_type == "swiglu":
            # Official SwiGLU width: 2/3 of expand_ratio * dim, rounded up to a multiple of 256.
            return 256 * math.ceil(int(2 * self.expand_ratio * self.vid_dim / 3) / 256)
        return self.expand_ratio * self.vid_dim

    def is_mm_layer(self, i: int) -> bool:
        return i < self.mm_layers

    def window_shifted(self, i: int) -> bool:
        return WINDOW_METHODS[self.window_method[i % len(self.window_method)]]


WINDOW_METHODS = {"720pwin_by_size_bysize": False, "720pswin_by_size_bysize": True}

DIT_CONFIGS: dict[str, DiTConfig] = {
    "seedvr2-3b": DiTConfig(),
    "seedvr2-7b": DiTConfig(
        vid_dim=3072,
        txt_dim=3072,
        emb_dim=18432,
        heads=24,
        head_dim=128,
        num_layers=36,
        mm_layers=36,
        mlp_type="normal",
        rope_type="rope3d",
        rope_dim=64,
        vid_out_norm=False,
        last_layer_vid_only=False,
    ),
}

# Fields derived from others: overriding vid_dim also moves them unless they are given explicitly.
_DERIVED = {"txt_dim": lambda c: c["vid_dim"], "emb_dim": lambda c: 6 * c["vid_dim"]}


def _coerce(name: str, value: Any, default: Any) -> Any:
    if isinstance(default, tuple):
        if name == "window" and value and isinstance(value[0], (list, tuple)):
            value = value[0]  # official configs list one window per layer; all are equal
        return tuple(value)
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, int) and not isinstance(value, bool):
        return int(value)
    return value


def make_dit_config(base: str | DiTConfig = "seedvr2-3b", overrides: Mapping[str, Any] | None = None) -> DiTConfig:
    """Official config `base` with official-named `overrides` applied; unknown names raise ConfigError."""
    cfg = DIT_CONFIGS[base] if isinstance(base, str) else base
    overrides = dict(overrides or {})
    known = {f.name: f for f in dataclasses.fields(DiTConfig)}
    # Official config files carry fields that name code paths or have a single value; accept them.
    ignorable = {"__object__", "vid_out_norm", "txt_in_norm", "norm", "qk_norm", "ada", "msa_type",
                 "block_type", "qk_rope", "shared_mlp", "shared_qkv"}
    values = dataclasses.asdict(cfg)
    for name, value in overrides.items():
        if name == "vid_out_norm" and isinstance(value, bool):
            values[name] = value
        elif name in known:
            values[name] = _coerce(name, value, getattr(cfg, name))
        elif name not in ignorable:
            raise ConfigError(f"unknown DiT config field {name!r}; known fields: {', '.join(sorted(known))}")
    for name, derive in _DERIVED.items():
        if name not in overrides:
            values[name] = derive(values)
    if "rope_dim" not in overrides:
        values["rope_dim"] = cfg.rope_dim * values["head_dim"] // cfg.head_dim
    if "mm_layers" not in overrides:
        # All-per-stream families (7B) stay so at any depth; others keep their count, capped.
        all_mm = cfg.mm_layers == cfg.num_layers
        values["mm_layers"] = values["num_layers"] if all_mm else min(cfg.mm_layers, values["num_layers"])
    if "window_method" in overrides:
        values["window_method"] = tuple(overrides["window_method"])
    return DiTConfig(**values)


# ------------------------------------------------------------------------------------------------
# Video VAE (`VideoAutoencoderKLWrapper`, `models/video_vae_v3/s8_c16_t4_inflation_sd3.yaml`, FACTS.md section 5)

VAE_BLOCK_TYPES = {"down": "DownEncoderBlock3D", "up": "UpDecoderBlock3D"}
VAE_INFLATION_MODES = ("none", "tail", "replicate", "pad")


@dataclass(frozen=True)
class VAEConfig:
    """The causal video VAE; the defaults are the official SeedVR2 VAE (s8_c16_t4)."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 16
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2  # encoder resnets per block; the decoder has one more
    norm_num_groups: int = 32
    act_fn: str = "silu"
    # The last `temporal_scale_num` downsamplers of the encoder (and first upsamplers of the decoder) also
    # halve (double) time.
    temporal_scale_num: int = 2
    spatial_downsample_factor: int = 8
    temporal_downsample_factor: int = 4
    down_block_types: tuple[str, ...] = ("DownEncoderBlock3D",) * 4
    up_block_types: tuple[str, ...] = ("UpDecoderBlock3D",) * 4
    use_quant_conv: bool = False
    use_post_quant_conv: bool = False
    # How 2-D weights would be inflated to 3-D; 3-D checkpoints load unchanged, so it has no effect here.
    inflation_mode: str = "pad"
    # Official inference split size (frames); our streaming chunk size is set on the VAE object instead.
    slicing_sample_min_size: int = 4
    freeze_encoder: bool = False
    scaling_factor: float = 0.9152
    shifting_factor: float = 0.0
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        n = len(self.block_out_channels)
        if n < 1 or any(c <= 0 or c % self.norm_num_groups for c in self.block_out_channels):
            raise ConfigError(
                f"block_out_channels {list(self.block_out_channels)} must be positive multiples of "
                f"norm_num_groups={self.norm_num_groups}"
            )
        if self.act_fn != "silu":
            raise ConfigError(f"act_fn {self.act_fn!r} is not supported (the SeedVR2 VAE uses 'silu')")
        for kind, types in (("down", self.down_block_types), ("up", self.up_block_types)):
            if len(types) != n or any(t != VAE_BLOCK_TYPES[kind] for t in types):
                raise ConfigError(
                    f"{kind}_block_types {list(types)} must be {n} x {VAE_BLOCK_TYPES[kind]!r} "
                    "(one per block_out_channels)"
                )
        if not 0 <= self.temporal_scale_num <= n - 1:
            raise ConfigError(f"temporal_scale_num {self.temporal_scale_num} must lie in [0, {n - 1}]")
        if self.spatial_downsample_factor != 2 ** (n - 1):
            raise ConfigError(f"spatial_downsample_factor must be 2**{n - 1} = {2 ** (n - 1)} for {n} blocks")
        if self.temporal_downsample_factor != 2**self.temporal_scale_num:
            raise ConfigError(
                f"temporal_downsample_factor must be 2**temporal_scale_num = {2**self.temporal_scale_num}"
            )
        if self.use_quant_conv or self.use_post_quant_conv:
            raise ConfigError("use_quant_conv / use_post_quant_conv are not supported (the SeedVR2 VAE has neither)")
        if self.inflation_mode not in VAE_INFLATION_MODES:
            raise ConfigError(f"inflation_mode {self.inflation_mode!r} is not one of {VAE_INFLATION_MODES}")
        if self.layers_per_block < 1:
            raise ConfigError(f"layers_per_block must be >= 1, got {self.layers_per_block}")

    def temporal_block(self, i: int) -> bool:
        """Whether encoder block i's downsampler (and decoder block n-2-i's upsampler) also scales time."""
        n = len(self.block_out_channels)
        return i >= n - 1 - self.temporal_scale_num


VAE_CONFIGS: dict[str, VAEConfig] = {"seedvr2-vae": VAEConfig()}

# Official config fields with no effect on inference.
_VAE_IGNORABLE = {"__object__", "gradient_checkpoint", "slicing_up_num", "attention", "time_receptive_field",
                  "sample_size", "force_upcast"}


def make_vae_config(overrides: Mapping[str, Any] | None = None, base: str | VAEConfig = "seedvr2-vae") -> VAEConfig:
    """Official VAE config with official-named `overrides` (e.g. golden/vae_tiny.json's); unknown names raise."""
    cfg = VAE_CONFIGS[base] if isinstance(base, str) else base
    known = {f.name for f in dataclasses.fields(VAEConfig)}
    values = dataclasses.asdict(cfg)
    for name, value in dict(overrides or {}).items():
        if name in known:
            values[name] = _coerce(name, value, getattr(cfg, name))
        elif name == "time_receptive_field" and value != "full":
            raise ConfigError(f"time_receptive_field {value!r} is not supported (the SeedVR2 VAE uses 'full')")
        elif name == "attention" and value is not True:
            raise ConfigError("attention=False is not supported (the SeedVR2 VAE has mid-block attention)")
        elif name not in _VAE_IGNORABLE:
            raise ConfigError(f"unknown VAE config field {name!r}; known fields: {', '.join(sorted(known))}")
    n = len(values["block_out_channels"])
    for name, kind in (("down_block_types", "down"), ("up_block_types", "up")):
        if name not in (overrides or {}) and len(values[name]) != n:
            values[name] = (VAE_BLOCK_TYPES[kind],) * n
    return VAEConfig(**values)
