"""Which device a model's weights are on, changed without rebinding `forward` or `.to`.

A model's tensors have a home (where they were loaded, normally host memory). `ModuleResidency`
puts copies of them on a compute device for a while and, when the room is needed (the DiT and the
VAE take turns on the GPU between phases), drops those copies and puts the home tensors back: the
weights never change, so nothing is ever copied back. Tensors are moved one by one with `.to` and put
back into their module's `_parameters` / `_buffers` slot, so any tensor type that survives `.to`
(fp8, quantised GGUF types) keeps its stored dtype and bytes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from .errors import InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TensorSlot:
    """One named parameter or buffer entry of one module."""

    owner: nn.Module
    name: str
    is_param: bool

    def get(self) -> torch.Tensor:
        return (self.owner._parameters if self.is_param else self.owner._buffers)[self.name]

    def put(self, value: torch.Tensor) -> None:
        (self.owner._parameters if self.is_param else self.owner._buffers)[self.name] = value


def slot_value(tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`tensor` wrapped as a Parameter when `like` is one (same requires_grad), else `tensor` itself."""
    if isinstance(like, nn.Parameter):
        return nn.Parameter(tensor, requires_grad=like.requires_grad)
    return tensor


def tensor_groups(
    roots: nn.Module | Iterable[nn.Module], exclude: Iterable[nn.Module] = ()
) -> list[tuple[list[TensorSlot], torch.Tensor]]:
    """Every tensor of `roots` outside the `exclude` subtrees, with all the slots holding it (tied weights once)."""
    roots = [roots] if isinstance(roots, nn.Module) else list(roots)
    seen = {id(m) for sub in exclude for m in sub.modules()}
    groups: dict[int, tuple[list[TensorSlot], torch.Tensor]] = {}
    for module in (m for root in roots for m in root.modules()):
        if id(module) in seen:
            continue
        seen.add(id(module))
        for table, is_param in ((module._parameters, True), (module._buffers, False)):
            for name, tensor in table.items():
                if tensor is not None:
                    groups.setdefault(id(tensor), ([], tensor))[0].append(TensorSlot(module, name, is_param))
    return list(groups.values())


def resolve_device(device: torch.device | str) -> torch.device:
    """`device` with its index filled in ("cuda" -> "cuda:<current>"), so device comparisons are exact."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device {str(device)!r} was asked for, but this PyTorch has no usable CUDA GPU: "
            "pick 'cpu', or install a CUDA build of torch that matches your driver."
        )
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise InputError(f"device {str(device)!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index or 0) == (b.index or 0)


class ModuleResidency:
    """`load()` copies a module's tensors (outside `exclude`) to `device`; `unload()` puts the originals back.

    Also a context manager (`with ModuleResidency(vae, "cuda"): ...`). The originals are kept, so
    unloading copies nothing; tensors already on `device` are left alone.
    """

    def __init__(self, module: nn.Module, device: torch.device | str, exclude: Iterable[nn.Module] = ()):
        self.module = module
        self.device = resolve_device(device)
        self.exclude = tuple(exclude)
        self._moved: list[tuple[list[TensorSlot], torch.Tensor]] | None = None
        self.moved_bytes = 0

    @property
    def loaded(self) -> bool:
        return self._moved is not None

    def load(self) -> "ModuleResidency":
        """Put copies of the module's tensors on the device (no-op when already loaded)."""
        if self._moved is not None:
            return self
        self._moved, self.moved_bytes = [], 0
        try:
            for slots, tensor in tensor_groups(self.module, self.exclude):
                if same_device(tensor.device, self.device):
                    continue
                copy = slot_value(tensor.to(self.device, non_blocking=True), like=tensor)
                for slot in slots:
                    slot.put(copy)
                self._moved.append((slots, tensor))
                self.moved_bytes += tensor.nbytes
        except BaseException:
            self.unload()  # e.g. out of memory half way: leave the module as it was
            raise
        logger.debug("moved %.1f MiB of %s to %s", self.moved_bytes / 2**20, type(self.module).__name__, self.device)
        return self

    def unload(self) -> None:
        """Drop the device copies and put the original tensors back (no-op when not loaded)."""
        if self._moved is None:
            return
        for slots, original in self._moved:
            for slot in slots:
                slot.put(original)
        self._moved, self.moved_bytes = None, 0

    def __enter__(self) -> "ModuleResidency":
        return self.load()

    def __exit__(self, *exc) -> None:
        self.unload()


def on_device(module: nn.Module, device: torch.device | str, exclude: Iterable[nn.Module] = ()) -> ModuleResidency:
    """Context manager: `module`'s tensors on `device` inside the block, back at their home after it."""
    return ModuleResidency(module, device, exclude)
