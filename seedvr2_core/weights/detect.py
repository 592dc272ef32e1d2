"""Tell what a checkpoint is from its key names and tensor shapes, never from its file name."""

from __future__ import annotations

import re

from ..errors import StateDictMismatchError

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


# Keys only a SeedVR2 DiT / VAE has: an incomplete file that still has some is a damaged one of those.
DIT_BLOCK_KEY = re.compile(r"blocks\.\d+\.attn\.proj_qkv\.(vid|all)\.weight$")
VAE_BLOCK_KEY = re.compile(r"(encoder\.down_blocks|decoder\.up_blocks)\.\d+\.resnets\.\d+\.conv1\.weight$")


def _vae_kind(source, conv_key: str) -> str:
    # Other shapes than 4-D are damage, which strict loading names key by key.
    return "an image VAE with 2-D convolutions" if len(source.shape(conv_key)) == 4 else "seedvr2-vae"


def describe(source) -> str:
    """'seedvr2-dit', 'seedvr2-vae' (complete or damaged), or a phrase naming what the checkpoint looks like."""
    keys = source.keys()
    key_set = set(keys)
    if all(k in key_set for k in DIT_MARKERS):
        return "seedvr2-dit"
    if all(k in key_set for k in VAE_MARKERS):
        return _vae_kind(source, "encoder.conv_in.weight")
    for fragment, name in OTHER_MODELS:
        if any(fragment in k for k in keys):
            return name
    if key_set and key_set <= {"pos_emb", "neg_emb"}:
        return "the SeedVR2 text embeddings (they belong next to the DiT file, which loads them)"
    if any(k in key_set for k in DIT_MARKERS) or any(DIT_BLOCK_KEY.match(k) for k in keys):
        return "seedvr2-dit"
    vae_convs = [k for k in keys if k in VAE_MARKERS or VAE_BLOCK_KEY.match(k)]
    if vae_convs:
        return _vae_kind(source, vae_convs[0])
    sample = ", ".join(keys[:4])
    return f"an unknown model ({len(keys)} tensors, e.g. {sample})"


def block_indices(keys) -> list[int]:
    found = {int(m.group(1)) for k in keys if (m := re.match(r"blocks\.(\d+)\.", k))}
    return sorted(found)


def _damaged_dit(source, what: str) -> StateDictMismatchError:
    return StateDictMismatchError(
        f"{source.path} looks like a SeedVR2 DiT but {what}. The file is damaged or incomplete: download it "
        "again, or pick seedvr2_ema_3b / seedvr2_ema_7b."
    )


def _shape(source, keys: set[str], key: str, ndim: int) -> tuple[int, ...]:
    """The shape of `key`, which must exist with `ndim` non-zero sizes; StateDictMismatchError otherwise."""
    if key not in keys:
        raise _damaged_dit(source, f"has no tensor {key}")
    shape = tuple(source.shape(key))
    if len(shape) != ndim or not all(shape):
        expected = f"expected {ndim} dimensions, none of size 0"
        raise _damaged_dit(source, f"its tensor {key} has shape {list(shape)} ({expected})")
    return shape


def detect_dit_config(source) -> tuple[str, dict]:
    """(family, official-named fields read from shapes) of a SeedVR2 DiT reader; StateDictMismatchError
    naming the file when the tensors the fields are read from are missing or malformed."""
    keys = set(source.keys())
    dim, patch_in = _shape(source, keys, "vid_in.proj.weight", 2)
    blocks = block_indices(keys)
    if blocks != list(range(len(blocks))) or not blocks:
        shown = ", ".join(map(str, blocks[:8])) + (", ..." if len(blocks) > 8 else "")
        raise _damaged_dit(source, f"its transformer blocks are not numbered 0 to n-1 (found [{shown}])")
    mm_layers = sum(f"blocks.{i}.attn.proj_qkv.vid.weight" in keys for i in blocks)
    family = "seedvr2-3b" if "vid_out_norm.weight" in keys else "seedvr2-7b"
    stream = "vid" if mm_layers else "all"
    head_dim = _shape(source, keys, f"blocks.0.attn.norm_q.{stream}.weight", 1)[0]
    qkv_rows = _shape(source, keys, f"blocks.0.attn.proj_qkv.{stream}.weight", 2)[0]
    fields = {
        "vid_dim": dim,
        "txt_dim": dim,
        "emb_dim": _shape(source, keys, "emb_in.proj_out.weight", 2)[0],
        "vid_in_channels": patch_in // 4,
        "vid_out_channels": _shape(source, keys, "vid_out.proj.weight", 2)[0] // 4,
        "txt_in_dim": _shape(source, keys, "txt_in.weight", 2)[1],
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
        fields["expand_ratio"] = _shape(source, keys, f"blocks.0.mlp.{stream}.proj_in.weight", 2)[0] // dim
    freqs_key = "blocks.0.attn.rope.rope.freqs"
    if freqs_key in keys:
        fields["rope_dim"] = _rope_dim(family, head_dim, _shape(source, keys, freqs_key, 1)[0])
    elif family == "seedvr2-3b":
        fields["rope_dim"] = head_dim
    else:
        fields["rope_dim"] = head_dim // 2
    return family, fields


def _rope_dim(family: str, head_dim: int, n_freqs: int) -> int:
    """The official rope_dim when it gives `n_freqs` frequencies per axis, else the smallest that does."""
    official = head_dim if family == "seedvr2-3b" else head_dim // 2
    return official if (official // 3) // 2 == n_freqs else 6 * n_freqs
