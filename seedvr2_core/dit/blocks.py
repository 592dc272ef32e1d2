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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(F.silu(self.proj_in_gate(x)) * self.proj_in(x))


class GeluMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj_in = Linear(dim, hidden)
        self.proj_out = Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(F.gelu(self.proj_in(x), approximate="tanh"))


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


@dataclass
class BlockContext:
    """Per-forward state every block reads: modulation input, token counts, window plans."""

    emb: torch.Tensor  # (b, d, 2, 3)
    vid_lens: list[int]
    txt_lens: list[int]
    plans: dict[bool, WindowPlan]  # by "shifted"
    backend: AttentionBackend
    bf16_qkv: bool = False


def _per_sample(lens: list[int], fn: Callable[..., torch.Tensor], xs: list[torch.Tensor], vectors: list[torch.Tensor]):
    """fn(rows of each x for sample i, row i of each (b, d) vector) over the samples' token ranges."""
    vectors = [v.to(xs[0].dtype) for v in vectors]
    if len(lens) == 1:
        return fn(*xs, *(v[0] for v in vectors))
    out = torch.empty_like(xs[0])
    start = 0
    for i, n in enumerate(lens):
        rows = slice(start, start + n)
        out[rows] = fn(*(x[rows] for x in xs), *(v[i] for v in vectors))
        start += n
    return out


def modulate(x: torch.Tensor, lens: list[int], shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x * scale + shift, per sample (AdaSingle "in")."""
    return _per_sample(lens, lambda h, sh, sc: torch.addcmul(sh, h, sc), [x], [shift, scale])


def gated_residual(resid: torch.Tensor, h: torch.Tensor, lens: list[int], gate: torch.Tensor) -> torch.Tensor:
    """resid + h * gate, per sample (AdaSingle "out" plus the residual)."""
    return _per_sample(lens, lambda r, y, g: torch.addcmul(r, y, g), [resid, h], [gate])


class Attention(nn.Module):
    def __init__(self, cfg: DiTConfig, shared: bool):
        super().__init__()
        d, inner = cfg.vid_dim, cfg.inner_dim
        self.heads, self.head_dim = cfg.heads, cfg.head_dim
        self.proj_qkv = Streams(lambda: Linear(d, 3 * inner, bias=cfg.qk_bias), shared)
        self.proj_out = Streams(lambda: Linear(inner, d), shared)
        self.norm_q = Streams(lambda: RMSNorm(cfg.head_dim, cfg.norm_eps), shared)
        self.norm_k = Streams(lambda: RMSNorm(cfg.head_dim, cfg.norm_eps), shared)
        self.rope = RopeHolder(cfg)

    def _qkv(self, x: torch.Tensor, stream: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        qkv = self.proj_qkv[stream](x).view(len(x), 3, self.heads, self.head_dim)  # (L, 3, H, D)
        q, k, v = qkv.unbind(1)
        return self.norm_q[stream](q), self.norm_k[stream](k), v

    def forward(self, vid: torch.Tensor, txt: torch.Tensor, plan: WindowPlan, ctx: BlockContext):
        """vid (Nv, d), txt (Nt, d) -> attention outputs of the same shapes."""
        qv, kv, vv = self._qkv(vid, "vid")
        qt, kt, vt = self._qkv(txt, "txt")
        q, k, v = torch.cat([qv, qt]), torch.cat([kv, kt]), torch.cat([vv, vt])  # packed [video ; text]
        out_vid, out_txt = window_attention(q, k, v, plan, ctx.backend, ctx.bf16_qkv)
        return self.proj_out["vid"](out_vid.flatten(1)), self.proj_out["txt"](out_txt.flatten(1))


class MMDiTBlock(nn.Module):
    """Pre-norm attention and MLP, modulated per stream; shared weights when `shared`."""

    def __init__(self, cfg: DiTConfig, index: int):
        super().__init__()
        shared = not cfg.is_mm_layer(index)
        self.shifted = cfg.window_shifted(index)
        self.eps = cfg.norm_eps
        # 3B's last block leaves the text stream unmodulated and without MLP (its output is discarded).
        self.vid_only = cfg.last_layer_vid_only and index == cfg.num_layers - 1
        self.attn = Attention(cfg, shared)
        self.mlp = Streams(lambda: MLPS[cfg.mlp_type](cfg.vid_dim, cfg.mlp_hidden_dim), shared)
        self.ada = Streams(lambda: AdaSingle(cfg.vid_dim, ("attn", "mlp")), shared)

    def forward(self, vid: torch.Tensor, txt: torch.Tensor, ctx: BlockContext) -> tuple[torch.Tensor, torch.Tensor]:
        lens = {"vid": ctx.vid_lens, "txt": ctx.txt_lens}
        mod = {s: self.ada[s].vectors(ctx.emb, "attn") for s in STREAMS}  # shift, scale, gate
        x = {"vid": vid, "txt": txt}
        a = {s: rms_norm(x[s], None, self.eps) for s in STREAMS}
        for s in self._modulated():
            a[s] = modulate(a[s], lens[s], mod[s][0], mod[s][1])
        a["vid"], a["txt"] = self.attn(a["vid"], a["txt"], ctx.plans[self.shifted], ctx)
        if self.vid_only:
            # Official quirk (vid-only modules pass text through, then add the residual once more):
            # the text stream leaves the last block as 2 * (txt + attn_txt). It is discarded anyway.
            x["txt"] = 2 * (x["txt"] + a["txt"])
        for s in self._modulated():
            x[s] = gated_residual(x[s], a[s], lens[s], mod[s][2])
        mod = {s: self.ada[s].vectors(ctx.emb, "mlp") for s in self._modulated()}
        for s in self._modulated():
            m = modulate(rms_norm(x[s], None, self.eps), lens[s], mod[s][0], mod[s][1])
            x[s] = gated_residual(x[s], self.mlp[s](m), lens[s], mod[s][2])
        return x["vid"], x["txt"]

    def _modulated(self) -> tuple[str, ...]:
        return ("vid",) if self.vid_only else STREAMS
