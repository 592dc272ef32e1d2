"""The MM-DiT block of SeedVR2 (`mmdit_sr`, FACTS.md sections 2.4 to 2.7, 3.1, 3.2, 8.1).

Module and parameter names reproduce the official state-dict keys
(`blocks.{i}.{attn,mlp,ada}.{vid,txt,all}.*`), so checkpoints load without a key map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import AttentionBackend
from ..config import DiTConfig
from ..ops import Linear, RMSNorm, rms_norm
from .rope import rope_frequencies
from .window_attention import WindowPlan, window_attention

STREAMS = ("vid", "txt")
MLP_CHUNK_BYTES = 1 << 20  # rows of the MLP's hidden activation processed together (fits a core's L2)


class Streams(nn.Module):
    """One module per stream (`vid`, `txt`), or one shared by both (`all`)."""

    def __init__(self, make: Callable[[], nn.Module], shared: bool):
        super().__init__()
        self.shared = shared
        if shared:
            self.all = make()
        else:
            self.vid = make()
            self.txt = make()

    def __getitem__(self, stream: str) -> nn.Module:
        return self.all if self.shared else getattr(self, stream)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj_in_gate = Linear(dim, hidden, bias=False)
        self.proj_out = Linear(hidden, dim, bias=False)
        self.proj_in = Linear(dim, hidden, bias=False)

    def forward_into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        h, value = self.proj_in_gate(x), self.proj_in(x)
        # silu and the product a few rows at a time, in place: both passes then run in cache (2.5x faster
        # on CPU than two passes over the whole (N, hidden) tensor), with the same values.
        rows = max(1, MLP_CHUNK_BYTES // (h.shape[1] * h.element_size()))
        for start in range(0, len(h), rows):
            F.silu(h[start : start + rows], inplace=True).mul_(value[start : start + rows])
        return self.proj_out.forward_into(h, out)


class GeluMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj_in = Linear(dim, hidden)
        self.proj_out = Linear(hidden, dim)

    def forward_into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return self.proj_out.forward_into(F.gelu(self.proj_in(x), approximate="tanh"), out)


MLPS = {"swiglu": SwiGLU, "normal": GeluMLP}


class AdaSingle(nn.Module):
    """Learned offsets added to the shared timestep modulation (`e` viewed as (d, layers, 3))."""

    def __init__(self, dim: int, layers: tuple[str, ...]):
        super().__init__()
        self.layers = layers
        for layer in layers:
            for kind in ("shift", "scale", "gate"):
                self.register_parameter(f"{layer}_{kind}", nn.Parameter(torch.zeros(dim)))

    def vectors(self, e: torch.Tensor, layer: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """e (b, d, layers, 3) -> shift, scale, gate (b, d), float32."""
        i = self.layers.index(layer)
        return tuple(
            e[:, :, i, g].float() + getattr(self, f"{layer}_{kind}").float()
            for g, kind in enumerate(("shift", "scale", "gate"))
        )


class RopeFrequencies(nn.Module):
    """Holds the official `rope.freqs` buffer for state-dict compatibility; angles never read it."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.register_buffer("freqs", rope_frequencies(cfg))


class RopeHolder(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.rope = RopeFrequencies(cfg)


Rows = list[tuple[int, int, int]]  # (start, stop, sample) ranges of the packed token array


@dataclass
class TokenLayout:
    """Where each sample's tokens sit in the packed hidden state `[all video tokens ; all text tokens]`."""

    n_vid: int
    vid: Rows
    txt: Rows

    @classmethod
    def of(cls, vid_lens: list[int], txt_lens: list[int]) -> "TokenLayout":
        n_vid = sum(vid_lens)
        starts_v = [sum(vid_lens[:i]) for i in range(len(vid_lens))]
        starts_t = [n_vid + sum(txt_lens[:i]) for i in range(len(txt_lens))]
        return cls(
            n_vid,
            [(a, a + n, i) for i, (a, n) in enumerate(zip(starts_v, vid_lens))],
            [(a, a + n, i) for i, (a, n) in enumerate(zip(starts_t, txt_lens))],
        )

    @property
    def both(self) -> Rows:
        """Video and text rows, with a single sample's adjacent ranges merged into one."""
        if len(self.vid) == 1:
            return [(self.vid[0][0], self.txt[0][1], 0)]
        return self.vid + self.txt


@dataclass
class BlockContext:
    """Per-forward state every block reads: modulation input, token layout, window plans."""

    emb: torch.Tensor  # (b, d, 2, 3)
    layout: TokenLayout
    plans: dict[bool, WindowPlan]  # by "shifted"
    backend: AttentionBackend
    bf16_qkv: bool = False


Mod = list[tuple[Rows, tuple[torch.Tensor, ...]]]  # row ranges and their (b, d) shift, scale, gate


def modulate_(x: torch.Tensor, mods: Mod) -> torch.Tensor:
    """x[rows] = x[rows] * scale + shift in place, per sample (AdaSingle "in")."""
    for rows, (shift, scale, _) in mods:
        shift, scale = shift.to(x.dtype), scale.to(x.dtype)
        for a, b, i in rows:
            torch.addcmul(shift[i], x[a:b], scale[i], out=x[a:b])
    return x


def gated_add(x: torch.Tensor, h: torch.Tensor, mods: Mod, out: torch.Tensor) -> torch.Tensor:
    """out[rows] = x[rows] + h[rows] * gate, per sample (AdaSingle "out" plus the residual)."""
    for rows, (_, _, gate) in mods:
        gate = gate.to(x.dtype)
        for a, b, i in rows:
            torch.addcmul(x[a:b], h[a:b], gate[i], out=out[a:b])
    return out


def run_streams(streams: Streams, x: torch.Tensor, n_vid: int, width: int) -> torch.Tensor:
    """Apply a per-stream module (with `forward_into`) to packed rows: video rows, then text rows."""
    out = x.new_empty(len(x), width)
    if streams.shared:
        return streams.all.forward_into(x, out)
    streams.vid.forward_into(x[:n_vid], out[:n_vid])
    streams.txt.forward_into(x[n_vid:], out[n_vid:])
    return out


def norm_streams(streams: Streams, x: torch.Tensor, n_vid: int, eps: float) -> torch.Tensor:
    """Per-stream RMSNorm with weight over the last dim of packed rows x (N, H, D)."""
    if streams.shared:
        return rms_norm(x, streams.all.weight, eps)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    rms_norm(x[:n_vid], streams.vid.weight, eps, out=out[:n_vid])
    rms_norm(x[n_vid:], streams.txt.weight, eps, out=out[n_vid:])
    return out


class Attention(nn.Module):
    def __init__(self, cfg: DiTConfig, shared: bool):
        super().__init__()
        d, inner = cfg.vid_dim, cfg.inner_dim
        self.dim, self.inner, self.eps = d, inner, cfg.norm_eps
        self.heads, self.head_dim = cfg.heads, cfg.head_dim
        self.proj_qkv = Streams(lambda: Linear(d, 3 * inner, bias=cfg.qk_bias), shared)
        self.proj_out = Streams(lambda: Linear(inner, d), shared)
        self.norm_q = Streams(lambda: RMSNorm(cfg.head_dim, cfg.norm_eps), shared)
        self.norm_k = Streams(lambda: RMSNorm(cfg.head_dim, cfg.norm_eps), shared)
        self.rope = RopeHolder(cfg)

    def forward(self, a: torch.Tensor, plan: WindowPlan, ctx: BlockContext) -> torch.Tensor:
        """Packed normalised tokens a (N, d) -> attention output (N, d)."""
        n_vid = ctx.layout.n_vid
        qkv = run_streams(self.proj_qkv, a, n_vid, 3 * self.inner).view(len(a), 3, self.heads, self.head_dim)
        q = norm_streams(self.norm_q, qkv[:, 0], n_vid, self.eps)  # (N, H, D)
        k = norm_streams(self.norm_k, qkv[:, 1], n_vid, self.eps)
        out = window_attention(q, k, qkv[:, 2], plan, ctx.backend, ctx.bf16_qkv)  # (N, H, D)
        return run_streams(self.proj_out, out.view(len(a), self.inner), n_vid, self.dim)


class MMDiTBlock(nn.Module):
    """Pre-norm attention and MLP, modulated per stream; shared weights when `shared`.

    The hidden state is packed: `[video tokens ; text tokens]` (N, d), see TokenLayout.
    """

    def __init__(self, cfg: DiTConfig, index: int):
        super().__init__()
        shared = not cfg.is_mm_layer(index)
        self.shifted = cfg.window_shifted(index)
        self.eps = cfg.norm_eps
        self.dim = cfg.vid_dim
        # 3B's last block leaves the text stream unmodulated and without MLP (its output is discarded).
        self.vid_only = cfg.last_layer_vid_only and index == cfg.num_layers - 1
        self.attn = Attention(cfg, shared)
        self.mlp = Streams(lambda: MLPS[cfg.mlp_type](cfg.vid_dim, cfg.mlp_hidden_dim), shared)
        self.ada = Streams(lambda: AdaSingle(cfg.vid_dim, ("attn", "mlp")), shared)

    def _mods(self, ctx: BlockContext, layer: str) -> Mod:
        layout = ctx.layout
        if self.vid_only:
            return [(layout.vid, self.ada["vid"].vectors(ctx.emb, layer))]
        if self.ada.shared:
            return [(layout.both, self.ada.all.vectors(ctx.emb, layer))]
        return [(layout.vid, self.ada.vid.vectors(ctx.emb, layer)), (layout.txt, self.ada.txt.vectors(ctx.emb, layer))]

    def forward(self, x: torch.Tensor, ctx: BlockContext) -> torch.Tensor:
        """Packed hidden state (N, d) -> (N, d)."""
        n_vid = ctx.layout.n_vid
        mods = self._mods(ctx, "attn")
        a = modulate_(rms_norm(x, None, self.eps), mods)
        h = self.attn(a, ctx.plans[self.shifted], ctx)
        out = gated_add(x, h, mods, torch.empty_like(x))
        if self.vid_only:
            # Official quirk (vid-only modules pass text through, then add the residual once more):
            # the text stream leaves the last block as 2 * (txt + attn_txt). It is discarded anyway.
            torch.add(x[n_vid:], h[n_vid:], out=out[n_vid:]).mul_(2)
            self._mlp_(out[:n_vid], ctx, n_vid)
        else:
            self._mlp_(out, ctx, n_vid)
        return out

    def _mlp_(self, x: torch.Tensor, ctx: BlockContext, n_vid: int) -> None:
        """x += MLP(modulated norm of x) * gate, in place, on the rows given (all, or video only)."""
        mods = self._mods(ctx, "mlp")
        m = modulate_(rms_norm(x, None, self.eps), mods)
        if self.vid_only:
            m = self.mlp["vid"].forward_into(m, torch.empty_like(m))
        else:
            m = run_streams(self.mlp, m, n_vid, self.dim)
        gated_add(x, m, mods, x)
