"""Window attention over native-resolution batches (FACTS.md section 2.6).

Each window attends over `[its video tokens ; all text tokens of its sample]`. Video outputs go back
to their positions; each text token's output is the mean over its sample's windows.

Instead of looping over hundreds of windows, a `WindowPlan` (built once per forward and partition
kind, shared by every layer using it) groups windows of equal shape and text length. Each group is one
gather of a (G, L) index into the packed token array, one batched attention call, one scatter.

On the CPU a group's windows are gathered padded to the length the attention kernel runs fastest at
(`attention.dense_length`): the padding rows repeat the window's first row and are masked out as keys;
their outputs are dropped.

RoPE is applied once to the packed q and k, before any gather: a video token lies in exactly one window
of a partition, and a text token's angles are the same in every window (FACTS.md 3.1, 3.2), so each
packed row has one rotation per plan (`WindowPlan.rot`), and text rows are not rotated once per window.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from ..attention import AttentionBackend, dense_attention, dense_length, key_padding_mask, varlen_attention
from ..config import DiTConfig
from .rope import rotation, window_angles
from .windows import partition_windows


@dataclass
class WindowGroup:
    shape: tuple[int, int, int]
    vid_len: int
    length: int  # tokens per window: vid_len + txt_len
    index: torch.Tensor  # (G, >= length) rows into the packed [video ; text] token array; then padding rows
    txt_span: tuple[int, int] | None = None  # text rows (from the first text row) shared by every window, if so
    mask: torch.Tensor | None = None  # additive key mask hiding the padding rows (None: no padding)


@dataclass
class WindowPlan:
    groups: list[WindowGroup]
    n_vid: int
    n_txt: int
    txt_windows: torch.Tensor  # (n_txt, 1, 1) float32: windows each text token joins
    rot: torch.Tensor | None = None  # complex64 (rows, pairs): rotation of each of the first rows packed rows
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
    angles = None
    for (shape, txt_len), rows in buckets.items():
        vid_len = shape[0] * shape[1] * shape[2]
        index = torch.stack(rows)
        if rope:
            window = window_angles(cfg, shape, txt_len)  # (L, pairs), the same for every window of the group
            angles = window.new_zeros(n_vid + n_txt, window.shape[1]) if angles is None else angles
            angles[index] = window.expand(len(index), *window.shape)
        txt = index[:, vid_len:]
        span = None
        if txt.numel() and bool((txt == txt[:1]).all()):  # one sample's text in every window: consecutive rows
            span = (int(txt[0, 0]) - n_vid, int(txt[0, -1]) - n_vid + 1)
        length = index.shape[1]
        padded = dense_length(length, device)
        mask = key_padding_mask(length, padded, device)
        if padded > length:  # padding rows: the window's first row again, masked out as a key
            index = torch.cat([index, index[:, :1].expand(-1, padded - length)], 1)
        groups.append(WindowGroup(shape, vid_len, length, index.to(device), span, mask))
    if angles is not None and not angles[n_vid:].any():
        angles = angles[:n_vid]  # text is not rotated (7B): rotate the video rows only
    rot = rotation(angles).to(device) if angles is not None else None
    plan = WindowPlan(groups, n_vid, n_txt, txt_windows.view(-1, 1, 1).to(device), rot)
    lens = torch.tensor([g.length for g in groups for _ in range(g.index.shape[0])], dtype=torch.int32)
    plan.cu_seqlens = torch.nn.functional.pad(lens.cumsum(0, dtype=torch.int32), (1, 0)).to(device)
    plan.max_len = int(lens.max())
    return plan


def window_attention(
    qkv: torch.Tensor, plan: WindowPlan, backend: AttentionBackend, bf16_qkv: bool = False
) -> torch.Tensor:
    """Packed qkv (n_vid + n_txt, 3, H, D), q and k normalised and rotated by `plan.rot` -> (n_vid + n_txt, H, D)."""
    heads, dim = qkv.shape[2:]
    out_all = qkv.new_empty(plan.n_vid + plan.n_txt, heads, dim)
    vid_out = out_all[: plan.n_vid]
    txt_sum = torch.zeros(plan.n_txt, heads, dim, device=qkv.device, dtype=torch.float32)
    if backend.varlen:
        outputs = _varlen_groups(qkv, plan, backend, bf16_qkv)
    else:
        outputs = (_dense_group(qkv, g, bf16_qkv) for g in plan.groups)
    for group, out in zip(plan.groups, outputs):  # out: (G, L, H, D)
        vid_out.index_put_((group.index[:, : group.vid_len],), out[:, : group.vid_len].to(vid_out.dtype))
        if group.txt_span is not None:
            a, b = group.txt_span
            txt_sum[a:b] += torch.sum(out[:, group.vid_len :], 0, dtype=torch.float32)
        elif group.length > group.vid_len:
            txt_rows = group.index[:, group.vid_len : group.length].reshape(-1) - plan.n_vid
            txt_sum.index_add_(0, txt_rows, out[:, group.vid_len :].reshape(-1, heads, dim).float())
    torch.div(txt_sum, plan.txt_windows, out=txt_sum)
    out_all[plan.n_vid :] = txt_sum
    return out_all


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x's rows for every window of a group, (G, L, *x.shape[1:]) for an index (G, L). index_select copies
    whole rows (2-3x faster on CPU than advanced indexing, which goes element by element)."""
    return torch.index_select(x, 0, index.reshape(-1)).view(*index.shape, *x.shape[1:])


def _dense_group(qkv: torch.Tensor, group: WindowGroup, bf16_qkv: bool) -> torch.Tensor:
    """The group's attention output (G, length, H, D); padding rows are computed, then dropped."""
    q, k, v = _gather(qkv, group.index).unbind(2)  # one gather of (G, L, 3, H, D), then three views
    if bf16_qkv:
        # The official flash-attn call sees bf16 q, k, v and returns bf16; accumulate in float32.
        q, k, v = (x.bfloat16().float() for x in (q, k, v))
        return dense_attention(q, k, v, group.mask)[:, : group.length].bfloat16().to(qkv.dtype)
    return dense_attention(q, k, v, group.mask)[:, : group.length]


def _varlen_groups(qkv: torch.Tensor, plan: WindowPlan, backend: AttentionBackend, bf16_qkv: bool):
    # (total, 3, H, D), window by window; varlen kernels need no padding
    packed = torch.cat([_gather(qkv, g.index[:, : g.length]).flatten(0, 1) for g in plan.groups])
    dtype = torch.bfloat16 if bf16_qkv or qkv.dtype == torch.float32 else qkv.dtype
    q, k, v = (x.to(dtype).contiguous() for x in packed.unbind(1))
    out = varlen_attention(backend, q, k, v, plan.cu_seqlens, plan.max_len).to(qkv.dtype)
    sizes = [len(g.index) * g.length for g in plan.groups]
    return (o.view(len(g.index), g.length, *o.shape[1:]) for g, o in zip(plan.groups, out.split(sizes)))
