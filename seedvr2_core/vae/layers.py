"""The SeedVR2 video VAE's module tree: parameters and their official names, no computation.

Facts (official `models/video_vae_v3/modules/attn_video_vae.py` @ 673b563, FACTS.md section 5): all convs
are causal 3-D convs (3x3x3 unless noted); ResnetBlock3D = norm1, conv1, norm2, conv2 and a 1x1x1
`conv_shortcut` when channels change; encoder blocks end in a strided `downsamplers.0.conv` (kernel 1x3x3
for spatial-only blocks, 3x3x3 for the last `temporal_scale_num` downsampling blocks); decoder blocks have
`layers_per_block + 1` resnets and end in `upsamplers.0` = `conv` (3x3x3) + `upscale_conv` (1x1x1, C -> C*r);
the mid block holds `attentions.0` (GroupNorm + single-head q/k/v/out projections) between two resnets.
Registration order reproduces the official state-dict order (`manifests/vae.json`): the decoder registers
its up blocks before its mid block, and mid blocks their attentions before their resnets.

The computation lives in `program.py` (which step reads which module) and `engine.py` (how a step runs).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import VAEConfig


class CausalConv3d(nn.Conv3d):
    """A 3-D conv whose temporal padding is front replication (or the previous chunk's frames).

    Only the parameters and the geometry are used; `engine.py` builds the padded input itself.
    """

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (3, 3, 3),
                 stride: tuple[int, int, int] = (1, 1, 1)):
        super().__init__(cin, cout, kernel, stride=stride, padding=0)

    def reset_parameters(self) -> None:
        # Weights always come from a checkpoint (or an explicit initialiser); skip the costly default init.
        pass


class GroupNorm(nn.GroupNorm):
    """Per-frame GroupNorm ((b, c, t, h, w) normalised over (c/g, h, w) for every frame)."""

    def reset_parameters(self) -> None:
        pass


class Linear(nn.Linear):
    def reset_parameters(self) -> None:
        pass


class Attention(nn.Module):
    """Mid-block self-attention over the h*w positions of each frame (one head of width C)."""

    def __init__(self, channels: int, groups: int, eps: float):
        super().__init__()
        self.group_norm = GroupNorm(groups, channels, eps=eps)
        self.to_q = Linear(channels, channels)
        self.to_k = Linear(channels, channels)
        self.to_v = Linear(channels, channels)
        self.to_out = nn.ModuleList([Linear(channels, channels)])


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int, eps: float):
        super().__init__()
        self.norm1 = GroupNorm(groups, cin, eps=eps)
        self.conv1 = CausalConv3d(cin, cout)
        self.norm2 = GroupNorm(groups, cout, eps=eps)
        self.conv2 = CausalConv3d(cout, cout)
        self.conv_shortcut = CausalConv3d(cin, cout, (1, 1, 1)) if cin != cout else None


class Downsample(nn.Module):
    """Zero-pad right/bottom by 1, then a stride-2 conv (stride 2 in time too when `temporal`)."""

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.temporal = temporal
        kt, st = (3, 2) if temporal else (1, 1)
        self.conv = CausalConv3d(channels, channels, (kt, 3, 3), (st, 2, 2))


class Upsample(nn.Module):
    """1x1x1 conv to C*r channels, depth-to-space with channel order (x, y, z, c), then a 3x3x3 conv."""

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.temporal = temporal
        self.factors = (2 if temporal else 1, 2, 2)  # (z: time, x: rows, y: columns)
        self.conv = CausalConv3d(channels, channels)
        self.upscale_conv = CausalConv3d(channels, channels * 4 * self.factors[0], (1, 1, 1))


class DownBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cfg: VAEConfig, downsample: bool, temporal: bool):
        super().__init__()
        g, eps = cfg.norm_num_groups, cfg.norm_eps
        self.resnets = nn.ModuleList(
            ResnetBlock(cin if i == 0 else cout, cout, g, eps) for i in range(cfg.layers_per_block)
        )
        if downsample:
            self.downsamplers = nn.ModuleList([Downsample(cout, temporal)])


class UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cfg: VAEConfig, upsample: bool, temporal: bool):
        super().__init__()
        g, eps = cfg.norm_num_groups, cfg.norm_eps
        self.resnets = nn.ModuleList(
            ResnetBlock(cin if i == 0 else cout, cout, g, eps) for i in range(cfg.layers_per_block + 1)
        )
        if upsample:
            self.upsamplers = nn.ModuleList([Upsample(cout, temporal)])


class MidBlock(nn.Module):
    def __init__(self, channels: int, cfg: VAEConfig):
        super().__init__()
        g, eps = cfg.norm_num_groups, cfg.norm_eps
        self.attentions = nn.ModuleList([Attention(channels, g, eps)])
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, g, eps) for _ in range(2)])


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch = cfg.block_out_channels
        n = len(ch)
        self.conv_in = CausalConv3d(cfg.in_channels, ch[0])
        self.down_blocks = nn.ModuleList(
            DownBlock(ch[max(i - 1, 0)], ch[i], cfg, downsample=i < n - 1, temporal=cfg.temporal_block(i))
            for i in range(n)
        )
        self.mid_block = MidBlock(ch[-1], cfg)
        self.conv_norm_out = GroupNorm(cfg.norm_num_groups, ch[-1], eps=cfg.norm_eps)
        self.conv_out = CausalConv3d(ch[-1], 2 * cfg.latent_channels)


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch = list(reversed(cfg.block_out_channels))
        n = len(ch)
        self.conv_in = CausalConv3d(cfg.latent_channels, ch[0])
        self.up_blocks = nn.ModuleList(
            UpBlock(ch[max(i - 1, 0)], ch[i], cfg, upsample=i < n - 1, temporal=i < cfg.temporal_scale_num)
            for i in range(n)
        )
        self.mid_block = MidBlock(ch[0], cfg)
        self.conv_norm_out = GroupNorm(cfg.norm_num_groups, ch[-1], eps=cfg.norm_eps)
        self.conv_out = CausalConv3d(ch[-1], cfg.out_channels)


def init_random_(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Fill every parameter with seeded random values of a trained network's scale (tests, benchmarks)."""
    for name, p in module.named_parameters():
        with torch.no_grad():
            if p.ndim == 1:
                base = 1.0 if name.endswith("weight") else 0.0  # norm scales around 1, biases around 0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=generator))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=generator) / fan_in**0.5)
    return module
