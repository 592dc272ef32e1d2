"""The three phases of one temporal batch (VAE encode, the DiT step, VAE decode) and the colour fix.

Plain functions of the models and tensors: the pipeline runs them directly or through a `Runtime` (which
places the weights and chooses the VAE tiling under a memory plan), and the node graph's encode / restore /
decode nodes run them one at a time. Noise is drawn per latent frame position, so a batch gets the same
noise whatever cut it out of the video.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch
from einops import rearrange

from .color import color_fix
from .noise import latent_frame_keys
from .sampler import one_step
from .vae.model import sample_posterior
from .vae.tiling import VAETiling

TileProgress = Callable[[int, int], None]  # (tiles done, tiles total) of one VAE call
StageProgress = Callable[[str, int, int], None]  # (stage, tiles done, tiles total)


class NoiseSource(Protocol):
    def draw(self, keys: list[int], shape: tuple[int, int, int], stream: str) -> torch.Tensor: ...


def encode_moments_batch(vae, video: torch.Tensor, progress: TileProgress | None = None,
                         tiling: VAETiling | None = None) -> torch.Tensor:
    """video (3, T, H, W) in [-1, 1], T = 4n+1 -> posterior moments (1, 32, T', H/8, W/8), VAE compute dtype."""
    return vae.encode_moments(video[None], progress=progress, tiling=tiling)


def condition_latent(moments: torch.Tensor, start: int, noise: NoiseSource, vae_config,
                     dtype: torch.dtype) -> torch.Tensor:
    """Moments (1, 32, T', h, w) of the batch starting at video frame `start` -> condition latent (T', h, w, 16),
    float32: the posterior sampled with eps keyed by frame position, as the VAE's `encode` does."""
    channels, latent_frames, h, w = moments.shape[1] // 2, *moments.shape[2:]
    keys = latent_frame_keys(start, latent_frames)
    eps = rearrange(noise.draw(keys, (channels, h, w), "posterior"), "t c h w -> 1 c t h w")
    latent = sample_posterior(moments, eps, vae_config, dtype)  # (1, 16, T', h, w)
    return rearrange(latent[0], "c t h w -> t h w c").float()


def encode_batch(vae, video: torch.Tensor, start: int, noise: NoiseSource, progress: TileProgress | None = None,
                 tiling: VAETiling | None = None) -> torch.Tensor:
    """video (3, T, H, W) in [-1, 1], T = 4n+1 -> condition latent (T', H/8, W/8, 16), float32."""
    moments = encode_moments_batch(vae, video, progress, tiling)
    return condition_latent(moments, start, noise, vae.config, vae.compute_dtype)


def sample_batch(dit, cond: torch.Tensor, start: int, noise: NoiseSource, text: torch.Tensor,
                 device: torch.device | None = None) -> torch.Tensor:
    """Condition latent (T', h, w, 16) -> restored latent x_0 (T', h, w, 16), float32 (on `device` if given)."""
    x_t = noise.draw(latent_frame_keys(start, cond.shape[0]), tuple(cond.shape[1:]), "noise")
    return one_step(dit, [cond], [x_t], text, device)[0]


def decode_batch(vae, x0: torch.Tensor, frames: int, progress: TileProgress | None = None,
                 tiling: VAETiling | None = None) -> torch.Tensor:
    """Restored latent (T', h, w, 16) -> the batch's first `frames` frames (frames, 3, H, W) in [-1, 1]."""
    video = vae.decode(rearrange(x0, "t h w c -> 1 c t h w"), progress=progress, tiling=tiling)[0]  # (3, T, H, W)
    return rearrange(video[:, :frames], "c t h w -> t c h w")


def fix_colors(restored: torch.Tensor, video: torch.Tensor, method: str) -> torch.Tensor:
    """Decoded frames (n, 3, Hp, Wp) float32 on the CPU, corrected in place against the model input video
    (3, n, Hp, Wp) they were restored from; returns them."""
    reference = rearrange(video, "c t h w -> t c h w")
    return color_fix(restored, reference, method, out=restored)


def tile_progress(stages: StageProgress | None, stage: str) -> TileProgress | None:
    """The per-tile callback of one stage, reporting to `stages(stage, done, total)`; None without `stages`."""
    if stages is None:
        return None
    return lambda done, total: stages(stage, done, total)
