"""Progress of a restoration measured in frames, from the events the pipeline reports.

Events: a batch finished (frames now final), a VAE tile done (encode / decode), a DiT block done. The
value shown is the frames finished plus the current batch's share of new frames times the fraction of its
stages done; the stages weigh what they cost on a GPU at the official sizes (encode 25 %, the DiT step
35 %, decode 40 %). The value never goes back and never passes the total.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

STAGE_SPANS = {"encode": (0.0, 0.25), "dit": (0.25, 0.6), "decode": (0.6, 1.0)}

Sink = Callable[[float, "torch.Tensor | None"], None]  # (frames done, preview frame (H, W, 3) or None)


class FrameProgress:
    """Turns pipeline events into one monotonic value in frames, passed to `sink(value, preview)`.

    total: the frame count (an estimate for streams); step: new frames per batch (batch_size - overlap);
    spans: each stage's share of a batch, for runs of fewer stages (default STAGE_SPANS).
    """

    def __init__(self, total: int, step: int, sink: Sink, spans: dict[str, tuple[float, float]] | None = None):
        self.spans = spans or STAGE_SPANS
        self.total = max(1, total)
        self.step = max(1, step)
        self.sink = sink
        self.done = 0
        self.value = 0.0

    def _emit(self, value: float, preview: torch.Tensor | None = None) -> None:
        self.value = min(self.total, max(self.value, value))
        self.sink(self.value, preview)

    def stage(self, name: str, done: int, total: int) -> None:
        """A stage of the current batch reached done / total of its units (tiles, blocks)."""
        low, high = self.spans[name]
        fraction = low + (high - low) * done / max(1, total)
        self._emit(self.done + fraction * min(self.step, self.total - self.done))

    def frames_done(self, done: int, preview: torch.Tensor | None = None) -> None:
        """`done` frames are final; `preview` is one of them (H, W, 3) float in [0, 1]."""
        self.done = done
        self._emit(done, preview)

    def block_observer(self, num_blocks: int) -> "BlockProgress":
        return BlockProgress(self, num_blocks)


class BlockProgress:
    """A NaDiT block observer reporting the "dit" stage of a FrameProgress after every block."""

    def __init__(self, progress: FrameProgress, num_blocks: int):
        self.progress, self.num_blocks = progress, num_blocks

    def before_block(self, index: int, block: nn.Module) -> None:
        pass

    def after_block(self, index: int, block: nn.Module) -> None:
        self.progress.stage("dit", index + 1, self.num_blocks)
