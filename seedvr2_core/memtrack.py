"""Measure the peak bytes a piece of code allocates on a device, the way the memory plan estimates them.

The memory plan (`memory.py`) estimates bytes held by the device allocator (tensors, plus what kernels
allocate through it), not the process's resident size: on CUDA that is exactly what
`torch.cuda.max_memory_allocated` reports, so a GPU run can be checked against the estimate as is. The
CPU has no such counter; there, PyTorch's profiler reports every allocation and free made through
PyTorch's CPU allocator (`profile_memory=True`), and the running sum of those gives the same figure. RSS
would also count the C heap's cached free blocks, oneDNN's private scratch and the interpreter, which
no device allocator has, so it is not used here.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch


@dataclass
class PeakReading:
    """Filled in when the `tracked_peak` block ends: the highest bytes allocated above the start, and
    the bytes still allocated above the start at the end."""

    peak: int = 0
    end: int = 0


def _walk(nodes):
    for node in nodes:
        yield node
        yield from _walk(node.children)


def _cpu_allocation_deltas(prof) -> list[int]:
    """Signed sizes of the CPU allocations (+) and frees (-) the profiler saw, in time order."""
    from torch._C._profiler import _EventType

    events = [n for n in _walk(prof.profiler.kineto_results.experimental_event_tree()) if n.tag == _EventType.Allocation]
    events = [n for n in events if n.extra_fields.device.type == "cpu"]
    events.sort(key=lambda n: n.start_time_ns)
    return [int(n.extra_fields.alloc_size) for n in events]


@contextlib.contextmanager
def tracked_peak(device: torch.device | str = "cpu") -> Iterator[PeakReading]:
    """Context manager: the peak allocator bytes above those held at entry, on `device` (CPU or CUDA).

    On the CPU the block runs under PyTorch's profiler (slower: use it for measurements, not production).
    Frees of tensors made before the block are not seen on the CPU, so the figure errs high, never low.
    """
    device = torch.device(device)
    reading = PeakReading()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield reading
        torch.cuda.synchronize(device)
        reading.peak = torch.cuda.max_memory_allocated(device) - start
        reading.end = torch.cuda.memory_allocated(device) - start
        return
    if device.type != "cpu":
        raise ValueError(f"tracked_peak measures CPU and CUDA devices, not {device}")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        yield reading
    total = peak = 0
    for delta in _cpu_allocation_deltas(prof):
        total += delta
        peak = max(peak, total)
    reading.peak, reading.end = peak, total
