"""Tensor plumbing of the VAE engine: channels-last allocation, the oneDNN conv call, whole-frame
activations kept as row bands, and handing freed memory back to the OS.

A conv step that is the last reader of its input releases each band of it once the last tile needing
those rows is done, while its output fills up band by band; the step's peak is then close to the larger
of its input and output instead of their sum.
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import sys
from typing import Iterator

import torch
import torch.nn.functional as F

from .tiles import Span

CL3D = torch.channels_last_3d


def conv3d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride=(1, 1, 1), padding=(0, 0, 0)):
    """F.conv3d, forced onto oneDNN on CPU: PyTorch's size heuristic sends small batch-1 inputs (latent-sized
    frames, 1x1x1 kernels) to a much slower reference kernel."""
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and torch.backends.mkldnn.is_available():
        return torch.ops.aten.mkldnn_convolution(x, w, b, list(padding), list(stride), [1, 1, 1], 1)
    return F.conv3d(x, w, b, stride, padding)


def empty_cl(like: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=CL3D)


def _libc_trim():
    """glibc's malloc_trim, or None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


MALLOC_TRIM = _libc_trim()


def release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc only).

    Tile-sized tensors come from glibc's heap, which keeps freed blocks resident; without this, a tiled
    call's resident memory grows by a few hundred MB of blocks it no longer uses.
    """
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)


class Act:
    """Activation (B, C, T, H, W) stored as bands of rows (channels-last 3-D tensors)."""

    def __init__(self, shape: tuple[int, ...], spans: list[Span]):
        self.shape = tuple(shape)
        self.spans = spans
        self.bands: list[torch.Tensor | None] = [None] * len(spans)
        self._starts = [s.lo for s in spans]
        self.sums = None  # norm.ChannelSums of the values, when the step writing them kept them

    @classmethod
    def of(cls, x: torch.Tensor) -> "Act":
        act = cls(x.shape, [Span(0, x.shape[3])])
        act.bands[0] = x
        return act

    def band_indices(self, rows: Span) -> range:
        first = bisect.bisect_right(self._starts, max(rows.lo, 0)) - 1
        last = bisect.bisect_left(self._starts, min(rows.hi, self.shape[3]))
        return range(max(first, 0), last)

    def pieces(self, rows: Span, cols: Span) -> Iterator[tuple[int, torch.Tensor]]:
        """(row offset inside `rows`, view) for each band overlapping rows (clipped to the frame) x cols."""
        for i in self.band_indices(rows):
            s, band = self.spans[i], self.bands[i]
            lo, hi = max(rows.lo, s.lo), min(rows.hi, s.hi)
            if lo >= hi:
                continue
            if band is None:
                raise RuntimeError(f"rows [{lo}, {hi}) of an activation were read after being freed")
            yield lo - rows.lo, band[:, :, :, lo - s.lo:hi - s.lo, cols.lo:cols.hi]

    def crop(self, rows: Span, cols: Span) -> torch.Tensor:
        """The region rows x cols (inside the frame): a view if it lies in one band, else a copy."""
        parts = [p for _, p in self.pieces(rows, cols)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=3)

    def tensor(self) -> torch.Tensor:
        return self.crop(Span(0, self.shape[3]), Span(0, self.shape[4]))

    def region(self, rows: Span, cols: Span, like: torch.Tensor) -> torch.Tensor:
        """A writable view of rows x cols, which must lie in one band (allocated on first use)."""
        (i,) = [j for j in self.band_indices(rows) if self.spans[j].lo < rows.hi]
        s = self.spans[i]
        if self.bands[i] is None:
            b, c, t, _, w = self.shape
            self.bands[i] = empty_cl(like, b, c, t, s.size, w)
        return self.bands[i][:, :, :, rows.lo - s.lo:rows.hi - s.lo, cols.lo:cols.hi]

    def free(self, i: int) -> int:
        """Drop band i; returns its size in bytes."""
        band, self.bands[i] = self.bands[i], None
        return 0 if band is None else band.numel() * band.element_size()

    @property
    def dtype(self) -> torch.dtype:
        return next(b for b in self.bands if b is not None).dtype
