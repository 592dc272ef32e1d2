"""Seeded noise that depends on a frame's position in the video, not on how the video was batched.

Each latent frame stands for a group of input frames (the first frame alone, then groups of 4). Its
noise comes from a generator seeded with (seed, index of the group's last input frame in the whole
video), so a frame range gets the same noise whatever the batch size or overlap around it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch


def latent_frame_keys(start: int, num_latent: int) -> list[int]:
    """Video index of the last input frame behind each latent frame of a batch starting at `start`."""
    return [start] + [start + 4 * j for j in range(1, num_latent)]


def _generator(seed: int, key: int, stream: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{key}:{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


@dataclass(frozen=True)
class SeededNoise:
    """Noise for latent grids of shape (h, w, c) per latent frame, keyed by video position."""

    seed: int

    def draw(self, keys: list[int], shape: tuple[int, int, int], stream: str) -> torch.Tensor:
        """(len(keys), *shape) float32 standard normal; `stream` separates independent draws."""
        return torch.stack([torch.randn(shape, generator=_generator(self.seed, k, stream)) for k in keys])
