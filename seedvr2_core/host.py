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
