"""Where a loaded model computes, and how it gets there: the whole model, or the DiT with blocks swapped.

A model is loaded once to its home (host memory, normally) and moved to the compute device only while
it is needed; the host (ComfyUI's model manager, through the patcher in `host.wrap_model`) may move it
back at any time to make room for other models. `Placement` is that move for one model:

* the VAE, or a DiT with `blocks_to_swap=0`: every tensor is copied to the device (`ModuleResidency`);
* a DiT with `blocks_to_swap=N`: the first N blocks stay at home and visit the device one at a time
  during a forward (`BlockSwapper`), the rest is copied;
* a DiT with `blocks_to_swap=None` ("auto"): N is the fewest blocks that let the model fit the byte
  budget the host grants when it loads the model (no budget: nothing swapped).

Unloading drops the device copies; nothing is copied back (weights never change), so a model can be
unloaded and loaded again between or after interrupted runs and computes exactly as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import InputError
from .offload import BlockSwapper
from .residency import ModuleResidency, resolve_device, same_device, tensor_groups

log = logging.getLogger(__name__)


def tensor_bytes(modules: nn.Module | list[nn.Module]) -> int:
    """Stored bytes of every distinct tensor of `modules` (tied weights once)."""
    return sum(t.nbytes for _, t in tensor_groups(modules))


def blocks_for_budget(model: nn.Module, budget: int) -> int:
    """Fewest leading DiT blocks to swap so that the resident weights plus the two swap buffers fit `budget`
    bytes; all blocks when even that does not fit."""
    sizes = [tensor_bytes(block) for block in model.blocks]
    rest = tensor_bytes(model) - sum(sizes)
    for n in range(len(sizes) + 1):
        buffers = 2 * max(sizes[:n]) if n else 0
        if rest + sum(sizes[n:]) + buffers <= budget:
            return n
    return len(sizes)


@dataclass(eq=False)
class Placement:
    """Moves one model between its home and `device` (see the module docstring).

    blocks_to_swap: 0 for the whole model; N > 0 swaps the first N DiT blocks; None picks N from the budget
    given to `load` (DiT only).
    """

    model: nn.Module
    device: torch.device
    home: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    blocks_to_swap: int | None = 0
    patcher: object | None = None  # the host's handle on this placement (host.wrap_model), if any
    total_bytes: int = field(init=False)
    _mover: BlockSwapper | ModuleResidency | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.device = resolve_device(self.device)
        swappable = isinstance(getattr(self.model, "blocks", None), nn.ModuleList)
        if self.blocks_to_swap != 0 and not swappable:
            raise InputError(f"{type(self.model).__name__} has no blocks to swap: use blocks_to_swap=0")
        if self.blocks_to_swap is not None and swappable:
            count = len(self.model.blocks)  # checked now, not at the first run: the loader names the mistake
            if isinstance(self.blocks_to_swap, bool) or not 0 <= self.blocks_to_swap <= count:
                raise InputError(f"blocks_to_swap must be from 0 to {count} (all of this model's blocks), "
                                 f"or -1 (auto); got {self.blocks_to_swap!r}")
        self.total_bytes = tensor_bytes(self.model)

    @property
    def loaded(self) -> bool:
        return self._mover is not None

    @property
    def swapped_blocks(self) -> int:
        return self._mover.blocks_to_swap if isinstance(self._mover, BlockSwapper) else 0

    def _bytes_on_device(self) -> int:
        on_device = sum(t.nbytes for _, t in tensor_groups(self.model) if same_device(t.device, self.device))
        if isinstance(self._mover, BlockSwapper):
            on_device += self._mover.device_buffer_bytes
        return on_device

    @property
    def loaded_bytes(self) -> int:
        """Bytes of this model on the compute device for this placement (weights, swap buffers); 0 unloaded."""
        return self._bytes_on_device() if self._mover is not None else 0

    def load(self, budget: int | None = None) -> None:
        """Put the model on the device (no-op when loaded); `budget` (bytes) decides "auto" swapping."""
        if self._mover is not None:
            return
        blocks = self.blocks_to_swap
        if blocks is None:
            blocks = 0 if budget is None else blocks_for_budget(self.model, budget)
        mover = BlockSwapper(self.model, blocks, self.device) if blocks else ModuleResidency(self.model, self.device)
        if isinstance(mover, BlockSwapper):
            mover.attach()
        else:
            mover.load()
        self._mover = mover
        log.info("%s on %s: %.0f MiB resident, %d blocks swapped", type(self.model).__name__, self.device,
                 self.loaded_bytes / 2**20, blocks)

    def unload(self) -> int:
        """Drop the device copies (no-op when not loaded); returns the bytes that left the device."""
        if self._mover is None:
            return 0
        before = self._bytes_on_device()
        mover, self._mover = self._mover, None
        if isinstance(mover, BlockSwapper):
            mover.detach()
        else:
            mover.unload()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return max(0, before - self._bytes_on_device())  # what stays: tensors whose home is the device
