"""Helpers to run the DiT on the golden cases' stored inputs (FACTS.md section 2 calling convention)."""

from __future__ import annotations

import torch


def case_inputs(io: dict, case: str):
    """(vid, txt, vid_shape, txt_shape, timestep, per-sample latent shapes) of golden `case`."""
    vids = [io[f"{case}.in.vid.{i}"] for i in range(_count(io, f"{case}.in.vid."))]
    txts = [io[f"{case}.in.txt.{i}"] for i in range(_count(io, f"{case}.in.txt."))]
    vid = torch.cat([v.reshape(-1, v.shape[-1]) for v in vids])
    txt = torch.cat(txts)
    vid_shape = torch.tensor([list(v.shape[:3]) for v in vids])
    txt_shape = torch.tensor([[len(t)] for t in txts])
    return vid, txt, vid_shape, txt_shape, io[f"{case}.in.timestep"], [tuple(v.shape[:3]) for v in vids]


def split_outputs(out: torch.Tensor, shapes) -> list[torch.Tensor]:
    sizes = [t * h * w for t, h, w in shapes]
    return [o.view(*s, -1) for o, s in zip(out.split(sizes), shapes)]


def _count(io: dict, prefix: str) -> int:
    return sum(k.startswith(prefix) for k in io)
