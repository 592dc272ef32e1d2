"""The one SeedVR2 sampling step (FACTS.md section 6, steps 8-12).

Schedule "lerp" x_t = (1 - t/T) x_0 + (t/T) x_T with T = 1000, a single Euler step from t = 1000 with
the v-prediction: x_0 = x_T - v. The DiT input per latent token is [x_T (16) | condition (16) | 1].
The condition is the LQ latent itself (the condition noise scale is 0 at inference).
"""

from __future__ import annotations

import torch

TIMESTEP = 1000.0


def dit_input(noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """noise, cond (t, h, w, 16) -> flattened DiT input (t*h*w, 33): [noise | cond | mask 1]."""
    ones = torch.ones(*cond.shape[:-1], 1, dtype=cond.dtype, device=cond.device)
    return torch.cat([noise.to(cond.dtype), cond, ones], dim=-1).reshape(-1, 2 * cond.shape[-1] + 1)


@torch.inference_mode()
def one_step(dit, conds: list[torch.Tensor], noises: list[torch.Tensor], text: torch.Tensor,
             device: torch.device | None = None) -> list[torch.Tensor]:
    """Restore latents: conds/noises are per-sample (t, h, w, 16) tensors; returns x_0 per sample, float32.

    All samples go through the DiT in one native-resolution batch (sizes may differ). `device`: where the
    DiT computes (default: where its first weight is; give it when block swapping keeps that one on the host).
    """
    device = device or next(dit.parameters()).device
    vid = torch.cat([dit_input(n.to(device), c.to(device)) for n, c in zip(noises, conds)])
    vid_shape = torch.tensor([list(c.shape[:3]) for c in conds], device=device)
    txt = text.to(device).float().repeat(len(conds), 1)
    txt_shape = torch.tensor([[len(text)]] * len(conds), device=device)
    timestep = torch.full((len(conds),), TIMESTEP, device=device)
    v = dit(vid.float(), txt, vid_shape, txt_shape, timestep)  # (sum t*h*w, 16)
    sizes = [c.shape[0] * c.shape[1] * c.shape[2] for c in conds]
    return [n.to(device).float() - vs.view(n.shape).float() for n, vs in zip(noises, v.split(sizes))]
