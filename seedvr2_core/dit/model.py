"""NaDiT: the SeedVR2 diffusion transformer, one definition for 3B and 7B.

Paper: "SeedVR2: One-Step Video Restoration via Diffusion Adversarial Post-Training" (ByteDance Seed).
Facts (calling convention, patching, embeddings, output head and its 3B modulation quirk) from the
official release as recorded in ../shared/reference/FACTS.md sections 2, 3 and 8.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from ..attention import AttentionBackend, resolve_backend
from ..config import DiTConfig
from ..ops import Linear, RMSNorm
from .blocks import BlockContext, MMDiTBlock, TokenLayout, modulate_
from .window_attention import build_window_plan


class BlockObserver(Protocol):
    """Called around every block of a forward pass (block swapping, cancellation, profiling).

    Observers may also define `begin_forward()` and `end_forward(failed: bool)`: called, when present,
    at the start of every forward and at its end, even when it raised (`failed`), so that state kept
    across blocks (weights in flight, events) is reset before the model is used again.
    """

    def before_block(self, index: int, block: nn.Module) -> None: ...

    def after_block(self, index: int, block: nn.Module) -> None: ...


def timestep_sinusoid(timestep: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """(b,) raw timesteps -> (b, dim) float32 [sin | cos], frequencies exp(-ln(1e4) k / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timestep.device) / half)
    angles = timestep.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        d = cfg.vid_dim
        self.proj_in = Linear(256, d)
        self.proj_hid = Linear(d, d)
        self.proj_out = Linear(d, cfg.emb_dim)

    def forward(self, timestep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        h = F.silu(self.proj_in(timestep_sinusoid(timestep).to(dtype)))
        return self.proj_out(F.silu(self.proj_hid(h)))  # (b, 6d)


class PatchIn(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        pt, ph, pw = cfg.patch_size
        self.proj = Linear(cfg.vid_in_channels * pt * ph * pw, cfg.vid_dim)


class PatchOut(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        pt, ph, pw = cfg.patch_size
        self.proj = Linear(cfg.vid_dim, cfg.vid_out_channels * pt * ph * pw)


class OutputModulation(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.out_shift = nn.Parameter(torch.zeros(dim))
        self.out_scale = nn.Parameter(torch.zeros(dim))


class NaDiT(nn.Module):
    """model(vid (N, 33), txt (M, txt_in_dim), vid_shape (b, 3), txt_shape (b, 1), timestep (b,)) -> (N, 16).

    Samples are flattened (t, h, w) rasters of pre-patch latents, concatenated (FACTS.md section 2).
    """

    def __init__(self, cfg: DiTConfig, attention: str = "auto"):
        super().__init__()
        self.config = cfg
        self.attention = attention
        self.compute_dtype = torch.float32
        self.emulate_bf16_attention = False  # round q, k, v to bf16 as the official flash-attn call does
        self.vid_in = PatchIn(cfg)
        self.txt_in = Linear(cfg.txt_in_dim, cfg.vid_dim)
        self.emb_in = TimestepEmbedding(cfg)
        self.blocks = nn.ModuleList(MMDiTBlock(cfg, i) for i in range(cfg.num_layers))
        if cfg.vid_out_norm:
            self.vid_out_norm = RMSNorm(cfg.vid_dim, cfg.norm_eps)
            self.vid_out_ada = OutputModulation(cfg.vid_dim)
        self.vid_out = PatchOut(cfg)
        self.observers: list[BlockObserver] = []

    def add_observer(self, observer: BlockObserver) -> None:
        self.observers.append(observer)

    def remove_observer(self, observer: BlockObserver) -> None:
        if observer in self.observers:
            self.observers.remove(observer)

    def _patch(self, vid: torch.Tensor, shapes: list[tuple[int, int, int]]) -> torch.Tensor:
        _, ph, pw = self.config.patch_size
        parts = vid.split([t * h * w for t, h, w in shapes])
        return torch.cat([
            rearrange(x, "(t h dh w dw) c -> (t h w) (dh dw c)", t=t, h=h // ph, w=w // pw, dh=ph, dw=pw)
            for x, (t, h, w) in zip(parts, shapes)
        ])

    def _unpatch(self, out: torch.Tensor, shapes: list[tuple[int, int, int]]) -> torch.Tensor:
        _, ph, pw = self.config.patch_size
        parts = out.split([t * (h // ph) * (w // pw) for t, h, w in shapes])
        return torch.cat([
            rearrange(x, "(t h w) (dh dw c) -> (t h dh w dw) c", t=t, h=h // ph, w=w // pw, dh=ph, dw=pw)
            for x, (t, h, w) in zip(parts, shapes)
        ])

    def _check_shapes(self, vid, txt, vid_shape, txt_shape) -> tuple[list, list]:
        shapes = [tuple(int(v) for v in s) for s in vid_shape.tolist()]
        txt_lens = [int(s[0]) for s in txt_shape.tolist()]
        _, ph, pw = self.config.patch_size
        if any(h % ph or w % pw for _, h, w in shapes):
            raise ValueError(f"latent height and width must be multiples of {ph}x{pw}, got vid_shape {shapes}")
        if sum(t * h * w for t, h, w in shapes) != len(vid) or sum(txt_lens) != len(txt):
            raise ValueError(
                f"vid ({len(vid)} rows) and txt ({len(txt)} rows) do not match vid_shape {shapes} and txt_shape {txt_lens}"
            )
        return shapes, txt_lens

    def _backend(self, device: torch.device) -> AttentionBackend:
        return resolve_backend(self.attention, device)

    def _notify(self, event: str, *args) -> None:
        for observer in list(self.observers):
            hook = getattr(observer, event, None)  # optional events (see BlockObserver)
            if hook is not None:
                hook(*args)

    def forward(self, vid, txt, vid_shape, txt_shape, timestep) -> torch.Tensor:
        failed = True
        try:
            self._notify("begin_forward")
            out = self._forward(vid, txt, vid_shape, txt_shape, timestep)
            failed = False
        finally:
            self._notify("end_forward", failed)
        return out

    def _forward(self, vid, txt, vid_shape, txt_shape, timestep) -> torch.Tensor:
        shapes, txt_lens = self._check_shapes(vid, txt, vid_shape, txt_shape)
        cfg, dtype, device = self.config, self.compute_dtype, vid.device
        _, ph, pw = cfg.patch_size
        grids = [(t, h // ph, w // pw) for t, h, w in shapes]
        vid_h = self.vid_in.proj(self._patch(vid.to(dtype), shapes))  # (N / 4, d)
        txt_h = self.txt_in(txt.to(dtype))  # (M, d)
        emb = self.emb_in(timestep.to(device).reshape(-1), dtype)  # (b, 6d)
        ctx = BlockContext(
            emb=emb.view(len(shapes), cfg.vid_dim, 2, 3),
            layout=TokenLayout.of([t * h * w for t, h, w in grids], txt_lens),
            plans={s: build_window_plan(cfg, grids, txt_lens, s, device) for s in (False, True)},
            backend=self._backend(device),
            bf16_qkv=self.emulate_bf16_attention,
        )
        x = torch.cat([vid_h, txt_h])  # packed hidden state [video ; text] (N, d)
        del vid_h, txt_h
        for i, block in enumerate(self.blocks):
            for observer in self.observers:
                observer.before_block(i, block)
            x = block(x, ctx)
            for observer in self.observers:
                observer.after_block(i, block)
        vid_h = x[: ctx.layout.n_vid]
        if cfg.vid_out_norm:
            # Official quirk (FACTS.md 3.1, 8.1): the output modulation reuses the blocks' "attn"
            # slice of the timestep embedding (a cache-key collision in the reference code).
            e = ctx.emb[:, :, 0].float()  # (b, d, 3): shift, scale, gate of the attn layer
            shift = (e[..., 0] + self.vid_out_ada.out_shift.float()).to(vid_h.dtype)
            scale = (e[..., 1] + self.vid_out_ada.out_scale.float()).to(vid_h.dtype)
            vid_h = modulate_(self.vid_out_norm(vid_h), [(ctx.layout.vid, (shift, scale, None))])
        return self._unpatch(self.vid_out.proj(vid_h), shapes).to(vid.dtype)
