"""Per-frame GroupNorm + SiLU, with the statistics either computed on the spot or given.

The official VAE normalises every frame on its own ((b, c, t, h, w) -> (b*t, c, h, w), FACTS.md section 5).
Activations here are channels-last 3-D tensors, whose (b*t, c, h, w) view is a channels-last 2-D tensor, so
PyTorch's fused GroupNorm kernel runs on them without a copy.

When a frame is processed tile by tile, each tile must be normalised with the statistics of the whole
frame: `ChannelSums` accumulates them tile by tile as the producing step writes its output (sums of x and
x^2 per frame and channel, float32 within a tile, float64 across tiles), `frame_moments` computes them
from a stored activation when no producer did, and `norm_silu_into` applies them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .layers import GroupNorm

BAND_ELEMENTS = 1 << 20  # elements per band of the moment pass (4 MiB of float32 temporaries)


@dataclass(frozen=True)
class FrameMoments:
    """Mean and (biased) variance of every (batch, frame, group), float64, shape (B, T, G)."""

    mean: torch.Tensor
    var: torch.Tensor


def frames_view(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W) view (channels-last in, channels-last out)."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


class ChannelSums:
    """Running sums of x and x^2 per (batch, channel, frame) over the positions added so far."""

    def __init__(self) -> None:
        self.s1: torch.Tensor | None = None  # (B, T, C) float64
        self.s2: torch.Tensor | None = None
        self.positions = 0

    def add(self, x: torch.Tensor) -> None:
        """Add a region x (B, C, T, h, w): float32 sums over its positions, accumulated in float64."""
        b, c, t, h, w = x.shape
        # (B, T, h*w, C): a view for full-width rows of channels-last data, where reducing the middle
        # axis is 20x faster than reducing (h, w) of the 5-D tensor.
        v = x.permute(0, 2, 3, 4, 1).reshape(b, t, h * w, c)
        p1 = torch.empty(b, t, c, dtype=torch.float64, device=x.device)
        p2 = torch.empty_like(p1)
        for f in range(t):  # one frame at a time keeps the float32 temporaries small
            frame = v[:, f].float()
            p1[:, f] = frame.sum(1)
            p2[:, f] = (frame * frame).sum(1)
        self.s1, self.s2 = (p1, p2) if self.s1 is None else (self.s1 + p1, self.s2 + p2)
        self.positions += h * w

    def moments(self, groups: int) -> FrameMoments:
        b, t, c = self.s1.shape
        n = self.positions * (c // groups)
        mean = self.s1.view(b, t, groups, -1).sum(-1) / n  # (B, T, G)
        var = (self.s2.view(b, t, groups, -1).sum(-1) / n - mean.square()).clamp_min(0.0)
        return FrameMoments(mean, var)


def frame_moments(act, groups: int) -> FrameMoments:
    """Per-frame group moments of an activation (B, C, T, H, W) stored as row bands (`acts.Act`)."""
    if act.sums is not None and act.sums.positions == act.shape[3] * act.shape[4]:
        return act.sums.moments(groups)  # accumulated by the step that wrote it
    b, c, t, h, w = act.shape
    rows = max(1, BAND_ELEMENTS // max(1, b * t * w * c))
    sums = ChannelSums()
    for x in act.bands:
        for r0 in range(0, x.shape[3], rows):
            sums.add(x[:, :, :, r0:r0 + rows])
    return sums.moments(groups)


def norm_silu_into(out: torch.Tensor, x: torch.Tensor, norm: GroupNorm, moments: FrameMoments | None) -> None:
    """out[...] = silu(GroupNorm(x)) per frame; x, out (B, C, T, h, w). Without moments x is a whole frame."""
    if moments is None:
        y = group_norm(x, norm)
        torch.ops.aten.silu.out(y, out=out)  # one pass: activation and copy into the padded input
    else:
        _apply_moments(out, x, norm, moments)
        F.silu(out, inplace=True)


def group_norm(x: torch.Tensor, norm: GroupNorm) -> torch.Tensor:
    """Per-frame GroupNorm of a whole frame x (B, C, T, H, W) -> same shape, channels-last."""
    y = F.group_norm(frames_view(x), norm.num_groups, _vec(norm.weight, x), _vec(norm.bias, x), norm.eps)
    return y.view(x.shape[0], x.shape[2], *y.shape[1:]).transpose(1, 2)


def _vec(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # Half-precision activations keep float32 norm parameters (PyTorch's GroupNorm accepts the mix and
    # computes in float32), which is what the official bf16 model computes with bf16 parameters, only better.
    return v if x.dtype in (torch.bfloat16, torch.float16) else v.to(x.dtype)


def _apply_moments(out: torch.Tensor, x: torch.Tensor, norm: GroupNorm, m: FrameMoments) -> None:
    b, c, t = x.shape[:3]
    per = c // norm.num_groups
    rstd = (m.var + norm.eps).rsqrt()  # (b, t, g)
    scale = rstd.repeat_interleave(per, -1) * norm.weight.double()  # (b, t, c)
    shift = norm.bias.double() - m.mean.repeat_interleave(per, -1) * scale
    if x.dtype == torch.float32:
        # (b, c, t, 1, 1) views whose channel stride is 1, like the channels-last activations.
        sc = scale.float().transpose(1, 2)[..., None, None]
        sh = shift.float().transpose(1, 2)[..., None, None]
        torch.addcmul(sh, x, sc, out=out)
        return
    # Half precision: batch norm in inference mode applies given statistics in float32 internally.
    mean = m.mean.repeat_interleave(per, -1).float()
    var = m.var.repeat_interleave(per, -1).float()
    empty = x.new_empty(0, dtype=torch.float32)
    for i in range(b):
        for f in range(t):
            torch.ops.aten.native_batch_norm.out(
                x[i:i + 1, :, f], norm.weight.float(), norm.bias.float(), mean[i, f], var[i, f],
                False, 0.0, norm.eps, out=out[i:i + 1, :, f], save_mean=empty, save_invstd=empty,
            )
