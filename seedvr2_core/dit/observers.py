"""Block observers that are not block swapping: cancellation between blocks, and scoped attachment."""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn

from .. import host


class InterruptObserver:
    """Raises the host's interrupt (`host.check_interrupt()`) before every block, so Cancel stops a forward
    within one block. The forward's `end_forward` events still run, so the model stays usable."""

    def before_block(self, index: int, block: nn.Module) -> None:
        host.check_interrupt()

    def after_block(self, index: int, block: nn.Module) -> None:
        pass


@contextlib.contextmanager
def observing(model: nn.Module, *observers) -> Iterator[None]:
    """Within this scope `model` (a NaDiT) calls `observers`, after the ones it already has."""
    for observer in observers:
        model.add_observer(observer)
    try:
        yield
    finally:
        for observer in observers:
            model.remove_observer(observer)
