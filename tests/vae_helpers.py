"""Small real VAEs for tests: the golden tiny VAE and seeded random VAEs of the official structure."""

from __future__ import annotations

import torch

from seedvr2_core import VAEConfig, VideoAutoencoder, load_vae, make_vae_config
from seedvr2_core.vae import init_random_

TOL = dict(atol=1e-4, rtol=1e-4)


def golden_vae(golden, dtype=torch.float32) -> VideoAutoencoder:
    info, weights = golden("vae_tiny")
    return load_vae(weights, config=info["config"], dtype=dtype)


def random_vae(channels=(16, 32, 32, 32), groups=4, seed=0, dtype=torch.float32) -> VideoAutoencoder:
    """Official structure (blocks, temporal scaling, attention) at reduced widths, seeded weights."""
    cfg = make_vae_config({"block_out_channels": list(channels), "norm_num_groups": groups})
    vae = VideoAutoencoder(cfg)
    init_random_(vae, torch.Generator().manual_seed(seed))
    vae.requires_grad_(False).to(dtype)
    vae.compute_dtype = dtype
    return vae


def video(t: int, h: int, w: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    """Smooth random frames in [-1, 1] (low-frequency content, like images), (B, 3, T, H, W)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, t, max(h // 8, 1), max(w // 8, 1), generator=g) * 2 - 1
    fine = torch.nn.functional.interpolate(coarse, size=(t, h, w), mode="trilinear", align_corners=False)
    return (0.8 * fine + 0.2 * (torch.rand(batch, 3, t, h, w, generator=g) * 2 - 1)).clamp(-1, 1)


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 2.0) -> float:
    """PSNR in dB of a against b for signals spanning `peak` (2 for [-1, 1])."""
    mse = (a.double() - b.double()).square().mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(peak * peak / mse)).item()


__all__ = ["TOL", "VAEConfig", "golden_vae", "psnr", "random_vae", "video"]
