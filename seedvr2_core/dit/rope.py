"""Rotary position embeddings of the two DiT variants, per window (FACTS.md sections 3.1 and 3.2).

Both rotate interleaved pairs of head dims with angles `[t angles, h angles, w angles]`, each axis
getting rope_dim // 3 dims (rounded down to whole pairs); the remaining head dims pass through.

* `mmrope3d` (3B): language-model frequencies 10000^(-2j/axis_dims); a video token at offset
  (i_t, i_h, i_w) inside its window sits at (L_txt + i_t, i_h, i_w), text token k at (k, k, k).
* `rope3d` (7B): pixel frequencies pi * linspace(1, 128, axis_dims // 2); positions are
  linspace(-1, 1, n) across each window axis of extent n; text is not rotated.

Angles are always computed in float32, from the config, never from stored `freqs` buffers (an fp8
copy of the 3B frequencies rounds the smallest ones to zero, FACTS.md section 9).
"""

from __future__ import annotations

import math

import torch

from ..config import DiTConfig
from ..ops import cast_weight, inverse_rms

CHUNK_BYTES = 2 << 20  # float32 rows of q and k worked together by `norm_rope_`: they stay in a core's cache


def rope_frequencies(cfg: DiTConfig) -> torch.Tensor:
    """Per-axis inverse frequencies, float32 (rope_dim // 3 // 2,)."""
    axis_dims = cfg.rope_dim // 3
    n = axis_dims // 2
    if cfg.rope_type == "mmrope3d":
        return 1.0 / (10000 ** (torch.arange(0, axis_dims, 2, dtype=torch.float32)[:n] / axis_dims))
    return torch.linspace(1.0, 128.0, n, dtype=torch.float32) * math.pi


def rotated_dims(cfg: DiTConfig) -> int:
    return 3 * 2 * ((cfg.rope_dim // 3) // 2)


def _grid(t: int, h: int, w: int, axes: list[torch.Tensor]) -> torch.Tensor:
    """Positions (t*h*w, 3) of a raster grid from per-axis coordinate vectors."""
    pt, ph, pw = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([pt.reshape(-1), ph.reshape(-1), pw.reshape(-1)], dim=-1)


def window_angles(cfg: DiTConfig, shape: tuple[int, int, int], txt_len: int) -> torch.Tensor:
    """Pair angles (t*h*w + txt_len, rotated_dims / 2), float32, for one window followed by its text."""
    t, h, w = shape
    freqs = rope_frequencies(cfg)
    if cfg.rope_type == "mmrope3d":
        axes = [torch.arange(n, dtype=torch.float32) for n in (t, h, w)]
        vid_pos = _grid(t, h, w, axes) + torch.tensor([float(txt_len), 0.0, 0.0])
        txt_pos = torch.arange(txt_len, dtype=torch.float32)[:, None].expand(txt_len, 3)
    else:
        axes = [torch.linspace(-1.0, 1.0, n, dtype=torch.float32) for n in (t, h, w)]
        vid_pos = _grid(t, h, w, axes)
        txt_pos = None
    vid = (vid_pos[:, :, None] * freqs).reshape(len(vid_pos), -1)  # (L, 3 * n_freq): t, h, w blocks
    txt = torch.zeros(txt_len, vid.shape[1]) if txt_pos is None else (txt_pos[:, :, None] * freqs).reshape(txt_len, -1)
    return torch.cat([vid, txt])


def rotation(angles: torch.Tensor) -> torch.Tensor:
    """Unit complex numbers e^(i*angle), the form `apply_rope` takes."""
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope_(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Rotate, in place, interleaved pairs of the first 2*rot.shape[-1] dims of x (..., D).

    rot: complex64 (..., pairs), broadcastable to x's leading dims (for example (L, 1, pairs) against
    (L, heads, D)). The rotation is computed in float32 whatever x's dtype. x may be a strided view.
    """
    pairs = rot.shape[-1]
    head = x[..., : 2 * pairs].unflatten(-1, (pairs, 2))
    if x.dtype == torch.float32:
        torch.view_as_complex(head).mul_(rot)
        return x
    turned = head.float()  # half precision: rotate a float32 copy, then narrow it back once
    torch.view_as_complex(turned).mul_(rot)
    head.copy_(turned)
    return x


def norm_rope_(qk: torch.Tensor, weight: torch.Tensor, rot: torch.Tensor | None, eps: float) -> torch.Tensor:
    """q and k after their projection, in place: RMSNorm over D with `weight`, then RoPE.

    qk: (rows, 2, H, D), may be a strided view of the packed qkv; weight (2, 1, D): q's then k's;
    rot: complex64 (r, pairs) for the first r <= rows rows (the rest are not rotated), or None.
    A few rows at a time, in float32, rounded to qk's dtype once: each step's rows stay in cache between
    the passes (about 3x faster on CPU than whole-tensor passes, which wait on memory).
    """
    step = max(1, CHUNK_BYTES // (qk[0].numel() * 4))
    weight = cast_weight(weight, qk).float()
    for start in range(0, len(qk), step):
        part = qk[start : start + step]
        work = part.float()  # the rows themselves when qk is float32
        work.mul_(inverse_rms(work, eps)).mul_(weight)
        if rot is not None and start < len(rot):
            turn = rot[start : start + step, None, None, :]
            apply_rope_(work[: len(turn)], turn)
        if work.data_ptr() != part.data_ptr():
            part.copy_(work)
    return qk
