"""Temporal batches over a stream of frames, and the crossfade that joins their outputs.

A video is cut into batches of `batch_size` frames; consecutive batches share `overlap` frames. Each
shared frame is restored twice and the two results are blended with weights that ramp across the
overlap, w_j = (j + 1) / (overlap + 1) for the later batch: every overlap length, 1 included, blends
(a 0-to-1 ramp would leave the ends unblended and an overlap of 1 not blended at all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Iterable, Iterator, TypeVar

import torch

from .errors import InputError

T = TypeVar("T")


@dataclass
class TemporalBatch(Generic[T]):
    start: int  # video index of the batch's first frame
    frames: list[T]
    overlap: int  # leading frames shared with the previous batch
    is_last: bool


def check_batching(batch_size: int, overlap: int) -> None:
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1 frame, got {batch_size}")
    if not 0 <= overlap < batch_size:
        raise InputError(f"overlap must lie in [0, batch size - 1] = [0, {batch_size - 1}], got {overlap}")


def temporal_batches(
    frames: Iterable[T], batch_size: int, overlap: int = 0, start: int = 0, first_overlap: int = 0
) -> Iterator[TemporalBatch[T]]:
    """Batches over `frames` read lazily: at most batch_size + 1 frames are held at a time.

    To continue a stream, pass the frames from video index `start` on and, as `first_overlap`, how many of
    them a previous batch shared (and restored already): the batches are then those of the whole stream.
    """
    check_batching(batch_size, overlap)
    if not 0 <= first_overlap <= overlap or start < 0:
        raise InputError(f"cannot continue at frame {start} with {first_overlap} shared frames (overlap {overlap})")
    it = iter(frames)
    pending = next(it, None)
    batch: list[T] = []
    shared = first_overlap
    while pending is not None:
        while len(batch) < batch_size and pending is not None:
            batch.append(pending)
            pending = next(it, None)
        yield TemporalBatch(start, batch, shared, pending is None)
        if pending is None:
            return
        shared = overlap
        start += len(batch) - shared
        batch = batch[len(batch) - shared :]


def blend_weights(overlap: int) -> torch.Tensor:
    """Weights (overlap,) of the later batch across the shared frames, strictly inside (0, 1)."""
    return torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)


class Crossfader:
    """Turns restored batches (frames first) into the final frame sequence, blending the overlaps."""

    def __init__(self, tail: torch.Tensor | None = None) -> None:
        self.tail = tail  # last batch's frames held back for blending (a saved tail continues a stream)

    def push(self, frames: torch.Tensor, overlap: int, hold: int) -> torch.Tensor:
        """frames (n, ...) of a batch whose first `overlap` are shared with the previous batch; returns
        the frames now final and holds back the last `hold` (the next batch's overlap)."""
        if overlap:
            if self.tail is None or len(self.tail) != overlap:
                raise ValueError("overlap does not match the frames held back from the previous batch")
            w = blend_weights(overlap).to(frames.device).view(-1, *([1] * (frames.ndim - 1)))
            frames = frames.clone()
            frames[:overlap] = torch.lerp(self.tail.to(frames.dtype), frames[:overlap], w.to(frames.dtype))
        # A copy: a view would keep the whole batch alive until the next one arrives.
        self.tail = frames[len(frames) - hold :].clone() if hold else None
        return frames[: len(frames) - hold]
