"""The one adapter between the core and its host (../shared/HOST.md).

Only this module may import ComfyUI (`comfy`, `comfy_api`, `folder_paths`). Everything here has a
plain-Python behaviour when no ComfyUI is loaded (the CLI, the tests), so the core runs anywhere.

Cancellation: long loops (batches, tiles, DiT blocks) call `check_interrupt()`. Inside ComfyUI it raises
the host's interrupt exception when the user pressed Cancel; anywhere, callers can add their own
checks for a scope with `interrupt_checks(fn)` (the CLI and tests use this).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import sys
from typing import Callable, Iterator

_checks: contextvars.ContextVar[tuple[Callable[[], None], ...]] = contextvars.ContextVar("seedvr2_checks", default=())


def comfy_module(name: str):
    """The host's module `name` if ComfyUI is running in this process, else None (never imports it fresh)."""
    if "comfy" not in sys.modules and name not in sys.modules:
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def in_comfyui() -> bool:
    return comfy_module("comfy.model_management") is not None


@contextlib.contextmanager
def interrupt_checks(check: Callable[[], None]) -> Iterator[None]:
    """Within this scope, `check_interrupt()` also calls `check` (which raises to cancel)."""
    token = _checks.set(_checks.get() + (check,))
    try:
        yield
    finally:
        _checks.reset(token)


def check_interrupt() -> None:
    """Raise if the user asked to stop: the host's interrupt, or any check of the current scope."""
    mm = comfy_module("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()
    for check in _checks.get():
        check()


# ---- Memory and devices (used by the memory plan: memory_plan.py, runtime.py) ------------------------------


def default_device():
    """The compute device: ComfyUI's inside ComfyUI; else the current CUDA GPU if there is one; else the CPU."""
    import torch

    mm = comfy_module("comfy.model_management")
    if mm is not None:
        return mm.get_torch_device()
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def free_memory(device) -> int | None:
    """Bytes free for new tensors on `device` now (None if unknown): ComfyUI's figure inside ComfyUI
    (free VRAM plus its cache, or available RAM); else CUDA's free memory plus what PyTorch caches unused;
    else the available RAM for the CPU."""
    import psutil
    import torch

    mm = comfy_module("comfy.model_management")
    if mm is not None:
        return int(mm.get_free_memory(device))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type in ("cpu", "mps"):
        return int(psutil.virtual_memory().available)
    return None


def make_room(nbytes: int, device) -> None:
    """Inside ComfyUI, ask it to unload or offload its other models until `nbytes` are free on `device`."""
    mm = comfy_module("comfy.model_management")
    if mm is not None:
        mm.free_memory(nbytes, device)
