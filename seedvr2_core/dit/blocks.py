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

from .. import cpu_pack
from ..attention import AttentionBackend
from ..config import DiTConfig
from ..ops import Linear, RMSNorm, rms_norm
from .rope import norm_rope_, rope_frequencies
from .window_attention import WindowPlan, window_attention

STREAMS = ("vid", "txt")
MLP_CHUNK_BYTES = 2 << 20  # rows of the MLP's hidden activation processed together (fits a core's L2)
STEP_BYTES = 1 << 20  # rows of the hidden state the norm and modulation steps work on together


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

    def forward_into(self, x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        fused = cpu_pack.swiglu(x, self.proj_in_gate, self.proj_in)
        if fused is not None:
            return self.proj_out.forward_into(fused, out)
        h, value = self.proj_in_gate(x), self.proj_in(x)
        # silu and the product a few rows at a time, in place: both passes then run in cache (2.5x faster
        # on CPU than two passes over the whole (N, hidden) tensor), with the same values.
        rows = max(1, MLP_CHUNK_BYTES // (h.shape[1] * h.element_size()))
        for start in range(0, len(h), rows):
            F.silu(h[start : start + rows], inplace=True).mul_(value[start : start + rows])
        del value  # one hidden-sized tensor fewer while the output projection runs
        return self.proj_out.forward_into(h, out)


class GeluMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj_in = Linear(dim, hidden)
        self.proj_out = Linear(hidden, dim)

    def forward_into(self, x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        return self.proj_out.forward_into(F.gelu(self.proj_in(x), approximate="tanh"), out)


MLPS = {"swiglu": SwiGLU, "normal": GeluMLP}


class AdaSingle(nn.Module):
    """Learned offsets added to the shared timestep modulation (`e` viewed as (d, layers, 3))."""

    KINDS = ("shift", "scale", "gate")

    def __init__(self, dim: int, layers: tuple[str, ...]):
        super().__init__()
        self.layers = layers
        for layer in layers:
            for kind in self.KINDS:
                self.register_parameter(f"{layer}_{kind}", nn.Parameter(torch.zeros(dim)))

    def vectors(self, e: torch.Tensor, dtype: torch.dtype) -> dict[str, tuple[torch.Tensor, ...]]:
        """e (b, d, layers, 3) -> {layer: (shift, scale, gate)}, each (b, d): summed in float32, then in `dtype`."""
        offsets = torch.stack([getattr(self, f"{layer}_{kind}") for layer in self.layers for kind in self.KINDS])
        e = e.permute(0, 2, 3, 1).float() + offsets.float().view(len(self.layers), 3, -1)  # (b, layers, 3, d)
        e = e.to(dtype, memory_format=torch.contiguous_format)  # unit stride over d: the kernels vectorise
        return {layer: tuple(e[:, i].unbind(1)) for i, layer in enumerate(self.layers)}


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
        for a, b, i in rows:
            torch.addcmul(shift[i], x[a:b], scale[i], out=x[a:b])
    return x


def _steps(rows: Rows, x: torch.Tensor):
    """(start, stop, sample) pieces of `rows`, each at most STEP_BYTES of x's rows."""
    n = max(1, STEP_BYTES // (x[0].numel() * x.element_size()))
    for a, b, i in rows:
        for start in range(a, b, n):
            yield start, min(start + n, b), i


def norm_modulate(x: torch.Tensor, mods: Mod, eps: float, out: torch.Tensor) -> torch.Tensor:
    """out[rows] = rms_norm(x[rows]) * scale + shift, for the rows `mods` covers, a few rows at a time."""
    for rows, (shift, scale, _) in mods:
        for a, b, i in _steps(rows, x):
            y = rms_norm(x[a:b], None, eps, out=out[a:b])
            torch.addcmul(shift[i], y, scale[i], out=y)
    return out


def residual_norm_modulate(x, h, gates: Mod, mods: Mod, eps: float, out: torch.Tensor, normed: torch.Tensor):
    """out = x + h * gate (`gates`), then normed = rms_norm(out) * scale + shift (`mods`, same rows), a few rows
    at a time: each step's rows are still in cache for the norm and the modulation."""
    for (rows, (_, _, gate)), (_, (shift, scale, _)) in zip(gates, mods):
        for a, b, i in _steps(rows, x):
            o = torch.addcmul(x[a:b], h[a:b], gate[i], out=out[a:b])
            y = rms_norm(o, None, eps, out=normed[a:b])
            torch.addcmul(shift[i], y, scale[i], out=y)


def gated_add(x: torch.Tensor, h: torch.Tensor, mods: Mod, out: torch.Tensor) -> torch.Tensor:
    """out[rows] = x[rows] + h[rows] * gate, per sample (AdaSingle "out" plus the residual)."""
    for rows, (_, _, gate) in mods:
        for a, b, i in rows:
            torch.addcmul(x[a:b], h[a:b], gate[i], out=out[a:b])
    return out


def run_streams(streams: Streams, x: torch.Tensor, n_vid: int, width: int) -> torch.Tensor:
    """Apply a per-stream module (with `forward_into`) to packed rows: video rows, then text rows."""
    if streams.shared:
        return streams.all.forward_into(x, None)
    out = x.new_empty(len(x), width)
    streams.vid.forward_into(x[:n_vid], out[:n_vid])
    streams.txt.forward_into(x[n_vid:], out[n_vid:])
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
        rot = plan.rot
        streams = [(0, len(a), "all")] if self.norm_q.shared else [(0, n_vid, "vid"), (n_vid, len(a), "txt")]
        for start, stop, stream in streams:
            weight = torch.stack([self.norm_q[stream].weight, self.norm_k[stream].weight])[:, None]  # (2, 1, D)
            norm_rope_(qkv[start:stop, :2], weight, None if rot is None else rot[start:stop], self.eps)
        out = window_attention(qkv, plan, ctx.backend, ctx.bf16_qkv)  # (N, H, D)
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

    def _mods(self, ctx: BlockContext, dtype: torch.dtype) -> dict[str, Mod]:
        """{"attn": Mod, "mlp": Mod}: each stream's modulation vectors with the rows they apply to."""
        layout = ctx.layout
        if self.vid_only:
            streams = [(layout.vid, self.ada["vid"])]
        elif self.ada.shared:
            streams = [(layout.both, self.ada.all)]
        else:
            streams = [(layout.vid, self.ada.vid), (layout.txt, self.ada.txt)]
        vectors = [(rows, ada.vectors(ctx.emb, dtype)) for rows, ada in streams]
        return {layer: [(rows, v[layer]) for rows, v in vectors] for layer in ("attn", "mlp")}

    def forward(self, x: torch.Tensor, ctx: BlockContext) -> torch.Tensor:
        """Packed hidden state (N, d) -> (N, d)."""
        n_vid = ctx.layout.n_vid
        mods = self._mods(ctx, x.dtype)
        a = norm_modulate(x, mods["attn"], self.eps, torch.empty_like(x))
        if self.vid_only:  # its text rows are normalised, not modulated
            rms_norm(x[n_vid:], None, self.eps, out=a[n_vid:])
        h = self.attn(a, ctx.plans[self.shifted], ctx)
        out, m = torch.empty_like(x), torch.empty_like(x)
        residual_norm_modulate(x, h, mods["attn"], mods["mlp"], self.eps, out, m)
        if self.vid_only:
            # Official quirk (vid-only modules pass text through, then add the residual once more):
            # the text stream leaves the last block as 2 * (txt + attn_txt). It is discarded anyway.
            torch.add(x[n_vid:], h[n_vid:], out=out[n_vid:]).mul_(2)
            m = self.mlp["vid"].forward_into(m[:n_vid], None)
            gated_add(out, m, mods["mlp"], out)
        else:
            gated_add(out, run_streams(self.mlp, m, n_vid, self.dim), mods["mlp"], out)
        return out
