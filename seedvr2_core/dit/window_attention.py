"""Window attention over native-resolution batches (FACTS.md section 2.6).

Each window attends over `[its video tokens ; all text tokens of its sample]`. Video outputs go back
to their positions; each text token's output is the mean over its sample's windows.

Instead of looping over hundreds of windows, a `WindowPlan` (built once per forward and partition
kind, shared by every layer using it) groups windows of equal shape and text length. Each group is one
gather of a (G, L) index into the packed token array, one batched attention call, one scatter.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from ..attention import AttentionBackend, dense_attention, varlen_attention
from ..config import DiTConfig
from .rope import apply_rope_, rotation, window_angles
from .windows import partition_windows


@dataclass
class WindowGroup:
    shape: tuple[int, int, int]
    vid_len: int
    index: torch.Tensor  # (G, vid_len + txt_len) rows into the packed [video ; text] token array
    rot: torch.Tensor | None  # complex (vid_len + txt_len, pairs), or None without RoPE
    txt_rows: torch.Tensor | None = None  # (txt_len,) text rows when every window has the same text


@dataclass
class WindowPlan:
    groups: list[WindowGroup]
    n_vid: int
    n_txt: int
    txt_windows: torch.Tensor  # (n_txt, 1, 1) float32: windows each text token joins
    cu_seqlens: torch.Tensor | None = None  # for varlen backends: all windows, group by group
    max_len: int = 0


def build_window_plan(
    cfg: DiTConfig,
    grid_shapes: list[tuple[int, int, int]],
    txt_lens: list[int],
    shifted: bool,
    device: torch.device,
    rope: bool = True,
) -> WindowPlan:
    """Plan for patched grids `grid_shapes` (one (t, h, w) per sample) and their text lengths."""
    buckets: dict[tuple, list[torch.Tensor]] = defaultdict(list)
    n_vid = sum(t * h * w for t, h, w in grid_shapes)
    n_txt = sum(txt_lens)
    txt_windows = torch.zeros(n_txt)
    vid_off, txt_off = 0, n_vid
    for (t, h, w), txt_len in zip(grid_shapes, txt_lens):
        grid = torch.arange(vid_off, vid_off + t * h * w).view(t, h, w)
        txt_idx = torch.arange(txt_off, txt_off + txt_len)
        windows = partition_windows((t, h, w), cfg.window, shifted)
        for st, sh, sw in windows:
            cell = grid[st, sh, sw]
            buckets[(tuple(cell.shape), txt_len)].append(torch.cat([cell.reshape(-1), txt_idx]))
        txt_windows[txt_off - n_vid : txt_off - n_vid + txt_len] = len(windows)
        vid_off += t * h * w
        txt_off += txt_len
    groups = []
    for (shape, txt_len), rows in buckets.items():
        rot = rotation(window_angles(cfg, shape, txt_len)).to(device) if rope else None
        vid_len = shape[0] * shape[1] * shape[2]
        index = torch.stack(rows)
        txt = index[:, vid_len:]
        same_text = bool((txt == txt[:1]).all())
        groups.append(WindowGroup(shape, vid_len, index.to(device), rot, txt[0].to(device) if same_text else None))
    plan = WindowPlan(groups, n_vid, n_txt, txt_windows.view(-1, 1, 1).to(device))
    lens = torch.tensor([g.index.shape[1] for g in groups for _ in range(g.index.shape[0])], dtype=torch.int32)
    plan.cu_seqlens = torch.nn.functional.pad(lens.cumsum(0, dtype=torch.int32), (1, 0)).to(device)
    plan.max_len = int(lens.max())
    return plan


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: WindowPlan, backend: AttentionBackend, bf16_qkv: bool = False
) -> torch.Tensor:
    """Packed q, k, v (n_vid + n_txt, H, D), normalised, not yet rotated -> packed output (n_vid + n_txt, H, D)."""
    heads, dim = q.shape[1:]
    out_all = q.new_empty(plan.n_vid + plan.n_txt, heads, dim)
    vid_out = out_all[: plan.n_vid]
    txt_sum = torch.zeros(plan.n_txt, heads, dim, device=q.device, dtype=torch.float32)
    if backend.varlen:
        outputs = _varlen_groups(q, k, v, plan, backend, bf16_qkv)
    else:
        outputs = (_dense_group(q, k, v, g, bf16_qkv) for g in plan.groups)
    for group, out in zip(plan.groups, outputs):  # out: (G, L, H, D)
        vid_rows = group.index[:, : group.vid_len].reshape(-1)
        vid_out.index_copy_(0, vid_rows, out[:, : group.vid_len].reshape(-1, heads, dim).to(vid_out.dtype))
        txt_out = out[:, group.vid_len :].float()  # (G, txt_len, H, D)
        if group.txt_rows is not None:  # one sample's text in every window: a plain sum
            txt_sum[group.txt_rows - plan.n_vid] += txt_out.sum(0)
        else:
            txt_rows = group.index[:, group.vid_len :].reshape(-1) - plan.n_vid
            txt_sum.index_add_(0, txt_rows, txt_out.reshape(-1, heads, dim))
    torch.div(txt_sum, plan.txt_windows, out=txt_sum)
    out_all[plan.n_vid :] = txt_sum
    return out_all


def _gather_rotated(x: torch.Tensor, group: WindowGroup, rotate: bool) -> torch.Tensor:
    xg = x[group.index]  # (G, L, H, D), a fresh tensor: safe to rotate in place
    return apply_rope_(xg, group.rot) if rotate and group.rot is not None else xg


def _dense_group(q, k, v, group: WindowGroup, bf16_qkv: bool) -> torch.Tensor:
    qg, kg, vg = _gather_rotated(q, group, True), _gather_rotated(k, group, True), v[group.index]
    if bf16_qkv:
        # The official flash-attn call sees bf16 q, k, v and returns bf16; accumulate in float32.
        qg, kg, vg = (x.bfloat16().float() for x in (qg, kg, vg))
        return dense_attention(qg, kg, vg).bfloat16().to(q.dtype)
    return dense_attention(qg, kg, vg)


def _varlen_groups(q, k, v, plan: WindowPlan, backend: AttentionBackend, bf16_qkv: bool):
    qs, ks, vs = [], [], []
    for g in plan.groups:
        qs.append(_gather_rotated(q, g, True).flatten(0, 1))
        ks.append(_gather_rotated(k, g, True).flatten(0, 1))
        vs.append(v[g.index].flatten(0, 1))
    dtype = torch.bfloat16 if bf16_qkv or q.dtype == torch.float32 else q.dtype
    out = varlen_attention(
        backend, *(torch.cat(xs).to(dtype) for xs in (qs, ks, vs)), plan.cu_seqlens, plan.max_len
    ).to(q.dtype)
    sizes = [g.index.numel() for g in plan.groups]
    return (o.view(g.index.shape[0], g.index.shape[1], *o.shape[1:]) for g, o in zip(plan.groups, out.split(sizes)))
