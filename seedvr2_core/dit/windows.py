"""Adaptive window partition of the patched latent grid (FACTS.md section 4).

The window size is chosen so that a frame of any resolution holds about as many windows as a 720p
frame (a 45 x 80 patch grid) holds num_windows of; time is cut into windows of ceil(min(t, 30) / 4)
frames. Odd layers use the same sizes shifted by half a window. Windows are listed in the official
order: w outermost, then h, then t innermost.
"""

from __future__ import annotations

import math
from itertools import product

REFERENCE_GRID = (45, 80)  # 720p latent (90 x 160) after the 2x2 patch


def window_sizes(size: tuple[int, int, int], num_windows: tuple[int, int, int]) -> tuple[int, int, int]:
    t, h, w = size
    nt, nh, nw = num_windows
    scale = math.sqrt(REFERENCE_GRID[0] * REFERENCE_GRID[1] / (h * w))
    return (
        math.ceil(min(t, 30) / nt),
        math.ceil(round(h * scale) / nh),
        math.ceil(round(w * scale) / nw),
    )


def _axis_spans(n: int, size: int, shifted: bool) -> list[tuple[int, int]]:
    if not shifted:
        return [(i * size, min((i + 1) * size, n)) for i in range(math.ceil(n / size))]
    shift = 0.5 if size < n else 0.0
    count = math.ceil((n - shift) / size) + 1 if shift else 1
    spans = [(max(int((i - shift) * size), 0), min(int((i - shift + 1) * size), n)) for i in range(count)]
    return [(a, b) for a, b in spans if b > a]


def partition_windows(
    size: tuple[int, int, int], num_windows: tuple[int, int, int] = (4, 3, 3), shifted: bool = False
) -> list[tuple[slice, slice, slice]]:
    """Windows of a patched grid `size` = (t, h, w) as (slice_t, slice_h, slice_w), in official order."""
    t, h, w = (int(v) for v in size)
    if min(t, h, w) <= 0:
        raise ValueError(f"window partition needs a non-empty grid, got {size}")
    st, sh, sw = window_sizes((t, h, w), num_windows)
    spans_t = _axis_spans(t, st, shifted)
    spans_h = _axis_spans(h, sh, shifted)
    spans_w = _axis_spans(w, sw, shifted)
    return [
        (slice(*span_t), slice(*span_h), slice(*span_w))
        for span_w, span_h, span_t in product(spans_w, spans_h, spans_t)
    ]
