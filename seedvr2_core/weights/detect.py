"""Tell what a checkpoint is from its key names and tensor shapes, never from its file name."""

from __future__ import annotations

import re

# Canonical key fragments of models users pick by mistake, with what to call them.
OTHER_MODELS = (
    ("input_blocks.", "a Stable Diffusion 1.x/2.x/SDXL UNet"),
    ("conditioner.embedders.", "a Stable Diffusion XL checkpoint"),
    ("joint_blocks.", "a Stable Diffusion 3 transformer"),
    ("double_blocks.", "a Flux transformer"),
    ("first_stage_model.", "a Stable Diffusion checkpoint"),
    ("encoder.down.0.", "an image VAE (Stable Diffusion / Flux style)"),
    ("text_model.encoder.", "a CLIP text encoder"),
    ("encoder.block.0.", "a T5 text encoder"),
    ("patch_embedding.", "a Wan video model"),
    ("transformer_blocks.", "a diffusers transformer"),
)

DIT_MARKERS = ("vid_in.proj.weight", "txt_in.weight", "emb_in.proj_out.weight")
VAE_MARKERS = ("encoder.conv_in.weight", "decoder.conv_in.weight", "decoder.conv_out.weight")


def describe(source) -> str:
    """'seedvr2-dit', 'seedvr2-vae', or a phrase naming what the checkpoint looks like."""
    keys = source.keys()
    key_set = set(keys)
    if all(k in key_set for k in DIT_MARKERS):
        return "seedvr2-dit"
    if all(k in key_set for k in VAE_MARKERS):
        if len(source.shape("encoder.conv_in.weight")) == 5:
            return "seedvr2-vae"
        return "an image VAE with 2-D convolutions"
    for fragment, name in OTHER_MODELS:
        if any(fragment in k for k in keys):
            return name
    sample = ", ".join(keys[:4])
    return f"an unknown model ({len(keys)} tensors, e.g. {sample})"


def block_indices(keys) -> list[int]:
    found = {int(m.group(1)) for k in keys if (m := re.match(r"blocks\.(\d+)\.", k))}
    return sorted(found)


def detect_dit_config(source) -> tuple[str, dict]:
    """(family, official-named fields read from shapes) of a SeedVR2 DiT reader."""
    keys = set(source.keys())
    dim, patch_in = source.shape("vid_in.proj.weight")
    blocks = block_indices(keys)
    if blocks != list(range(len(blocks))) or not blocks:
        raise ValueError(f"transformer blocks are not numbered 0..n-1 (found {blocks[:8]}...)")
    mm_layers = sum(f"blocks.{i}.attn.proj_qkv.vid.weight" in keys for i in blocks)
    family = "seedvr2-3b" if "vid_out_norm.weight" in keys else "seedvr2-7b"
    stream = "vid" if mm_layers else "all"
    head_dim = source.shape(f"blocks.0.attn.norm_q.{stream}.weight")[0]
    qkv_rows = source.shape(f"blocks.0.attn.proj_qkv.{stream}.weight")[0]
    fields = {
        "vid_dim": dim,
        "txt_dim": dim,
        "emb_dim": source.shape("emb_in.proj_out.weight")[0],
        "vid_in_channels": patch_in // 4,
        "vid_out_channels": source.shape("vid_out.proj.weight")[0] // 4,
        "txt_in_dim": source.shape("txt_in.weight")[1],
        "num_layers": len(blocks),
        "mm_layers": mm_layers,
        "head_dim": head_dim,
        "heads": qkv_rows // (3 * head_dim),
        "qk_bias": f"blocks.0.attn.proj_qkv.{stream}.bias" in keys,
    }
    if f"blocks.0.mlp.{stream}.proj_in_gate.weight" in keys:
        fields["mlp_type"] = "swiglu"
    else:
        fields["mlp_type"] = "normal"
        fields["expand_ratio"] = source.shape(f"blocks.0.mlp.{stream}.proj_in.weight")[0] // dim
    freqs_key = "blocks.0.attn.rope.rope.freqs"
    if freqs_key in keys:
        fields["rope_dim"] = _rope_dim(family, head_dim, source.shape(freqs_key)[0])
    elif family == "seedvr2-3b":
        fields["rope_dim"] = head_dim
    else:
        fields["rope_dim"] = head_dim // 2
    return family, fields


def _rope_dim(family: str, head_dim: int, n_freqs: int) -> int:
    """The official rope_dim when it gives `n_freqs` frequencies per axis, else the smallest that does."""
    official = head_dim if family == "seedvr2-3b" else head_dim // 2
    return official if (official // 3) // 2 == n_freqs else 6 * n_freqs
