"""Tile geometry: grids over a frame, the input window a conv needs for an output tile, blend weights.

Two kinds of grids:
* core grids (`split`): tiles that partition an axis, every position in exactly one tile. The
  whole-frame mode computes each conv layer tile by tile and writes each tile's core, so the result is
  the untiled one.
* overlapping grids (`overlapping`): tiles that overlap their neighbours; each output position gets
  weights (`blend_weights`) that are positive only inside tiles covering it and sum to one over them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Span:
    """Half-open interval [lo, hi) on one axis."""

    lo: int
    hi: int

    @property
    def size(self) -> int:
        return self.hi - self.lo


@dataclass(frozen=True)
class Rect:
    rows: Span
    cols: Span


def split(n: int, tile: int) -> list[Span]:
    """Partition [0, n) into ceil(n / tile) nearly equal spans (sizes differ by at most one)."""
    if n <= 0:
        raise ValueError(f"cannot split an axis of length {n}")
    count = max(1, math.ceil(n / max(tile, 1)))
    edges = [round(i * n / count) for i in range(count + 1)]
    return [Span(a, b) for a, b in zip(edges, edges[1:])]


def grid(height: int, width: int, tile_h: int, tile_w: int) -> list[Rect]:
    """Row-major core grid of a height x width frame."""
    return [Rect(r, c) for r in split(height, tile_h) for c in split(width, tile_w)]


def overlapping(n: int, tile: int, overlap: int, align: int = 1) -> list[Span]:
    """Few equal spans of length <= `tile` covering [0, n), neighbours overlapping by >= `overlap`.

    The span length is the smallest (multiple of `align`) that covers the axis with the fewest spans,
    and starts are spread evenly on multiples of `align`, so no span is a thin sliver.
    """
    tile = max(align, tile // align * align)
    if tile >= n:
        return [Span(0, n)]
    # More overlap would multiply the tiles without widening any blend; starts step by >= `align`.
    overlap = max(0, min(overlap, tile // 2, tile - align))
    count = math.ceil((n - tile) / max(1, tile - overlap)) + 1
    size = min(tile, -(-math.ceil((n + (count - 1) * overlap) / count) // align) * align)
    size = max(size, overlap + align)
    count = math.ceil((n - size) / max(1, size - overlap)) + 1
    while True:  # rounding starts down to the alignment can open a gap: then spread one more span
        starts = sorted({((n - size) * i // (count - 1)) // align * align for i in range(count - 1)} | {n - size})
        if all(b - a <= size - overlap for a, b in zip(starts, starts[1:])):
            return [Span(a, a + size) for a in starts]
        count += 1


def ramp_weights(spans: list[Span], n: int, dtype=torch.float32) -> list[torch.Tensor]:
    """Per-span 1-D weights: linear ramps over the overlaps, positive inside the span, summing to one."""
    raw = []
    for i, s in enumerate(spans):
        w = torch.ones(s.size, dtype=torch.float64)
        if i > 0 and spans[i - 1].hi > s.lo:
            ov = spans[i - 1].hi - s.lo
            w[:ov] = torch.minimum(w[:ov], (torch.arange(ov, dtype=torch.float64) + 0.5) / ov)
        if i + 1 < len(spans) and spans[i + 1].lo < s.hi:
            ov = s.hi - spans[i + 1].lo
            w[-ov:] = torch.minimum(w[-ov:], (ov - torch.arange(ov, dtype=torch.float64) - 0.5) / ov)
        raw.append(w)
    total = torch.zeros(n, dtype=torch.float64)
    for s, w in zip(spans, raw):
        total[s.lo:s.hi] += w
    return [(w / total[s.lo:s.hi]).to(dtype) for s, w in zip(spans, raw)]


def conv_window(out: Span, n_in: int, kind: str) -> tuple[Span, Span]:
    """(needed input span, core input span) of a conv producing output span `out` on one axis.

    kind: "same" (kernel 3, stride 1, zero pad 1 each side), "down" (kernel 3, stride 2, zero pad 1 at the
    end only), "point" (kernel 1). The needed span may reach outside [0, n_in): those positions are the
    zero padding. The core spans of a partition of the output partition the input.
    """
    if kind == "same":
        return Span(out.lo - 1, out.hi + 1), out
    if kind == "down":
        return Span(2 * out.lo, 2 * out.hi + 1), Span(2 * out.lo, min(2 * out.hi, n_in))
    if kind == "point":
        return out, out
    raise ValueError(f"unknown conv kind {kind!r}")


def clip(span: Span, n: int) -> Span:
    return Span(max(span.lo, 0), min(span.hi, n))
