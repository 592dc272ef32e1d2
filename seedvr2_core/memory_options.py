"""What a run may use of the device's memory (`MemoryOptions`), and parsers for command-line and widget text.

Every knob defaults to "auto": the memory plan (`memory_plan.py`) picks it for the budget. Sizes are
binary: "8G", "8GB" and "8GiB" all mean 8 x 2^30 bytes, as GPU memory is sold and reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InputError
from .vae.tiling import VAETiling

AUTO = "auto"
ALL = "all"
DEVICE_MEMORY = ("auto", "separate", "shared")
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class MemoryOptions:
    """How a run may use memory.

    budget: bytes the run may hold on the compute device at its peak, weights included; None: what is free
        there now (free VRAM, or available RAM on the CPU) plus what our models already hold there, less
        a headroom for the allocator's fragmentation.
    blocks_to_swap: DiT blocks kept in host memory and streamed in during the step: "auto", "all" or a count.
    vae_tile: "auto", or a VAETiling that fixes the VAE's tiling (tile_size None: whole frames).
    dit_batch: frames per DiT batch: "auto" (the run's batch size, or fewer, 4n+1, when it does not fit)
        or a count.
    device_memory: "separate" (a discrete GPU: weights can live in host memory), "shared" (the CPU), or "auto"
        (shared for the CPU and Apple's unified memory, separate otherwise).
    """

    budget: int | None = None
    blocks_to_swap: int | str = AUTO
    vae_tile: VAETiling | str = AUTO
    dit_batch: int | str = AUTO
    device_memory: str = AUTO

    def __post_init__(self) -> None:
        if self.budget is not None and not _count(self.budget, 1):
            raise InputError(f"memory budget {self.budget!r} must be a positive number of bytes (None: the free memory)")
        if self.blocks_to_swap not in (AUTO, ALL) and not _count(self.blocks_to_swap, 0):
            raise InputError(f"blocks_to_swap {self.blocks_to_swap!r}: use 'auto', 'all' or a whole number >= 0")
        if self.vae_tile != AUTO and not isinstance(self.vae_tile, VAETiling):
            raise InputError(f"vae_tile {self.vae_tile!r}: use 'auto' or a VAETiling (see parse_vae_tile)")
        if self.dit_batch != AUTO and not _count(self.dit_batch, 1):
            raise InputError(f"dit_batch {self.dit_batch!r}: use 'auto' or a whole number of frames >= 1")
        if self.device_memory not in DEVICE_MEMORY:
            raise InputError(f"device_memory {self.device_memory!r}: use one of {', '.join(DEVICE_MEMORY)}")


def _count(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def parse_budget(text: str) -> int | None:
    """'8GiB', '7.5G', '6000M', '8 GB', '1073741824' -> bytes (binary units); 'auto' / 'free' -> None."""
    if text.strip().lower() in (AUTO, "free", ""):
        return None
    match = _SIZE.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise InputError(
            f"memory budget {text!r}: give a size such as 8GiB, 7.5G or 6000M (binary units: G = 2^30 bytes), "
            "or 'auto' for the free memory"
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_blocks_to_swap(text: str) -> int | str:
    """'auto', 'all', or a whole number of blocks -> the MemoryOptions value."""
    value = text.strip().lower()
    if value in (AUTO, ALL):
        return value
    if value.isdigit():
        return int(value)
    raise InputError(f"blocks to swap {text!r}: use 'auto', 'all' or a whole number such as 16")


def parse_vae_tile(text: str) -> VAETiling | str:
    """VAE tiling from text: 'auto'; 'off' (whole frames); '512' (exact tiles of 512 px: whole-frame
    statistics); '512:tile' (independent tiles, bounded memory at any size, small seams drift);
    '512:tile:96' (with 96 px of overlap)."""
    value = text.strip().lower()
    if value == AUTO:
        return AUTO
    if value in ("off", "none", "whole"):
        return VAETiling()
    parts = value.split(":")
    ok = parts[0].isdigit() and (len(parts) == 1 or (parts[1] in ("frame", "tile") and len(parts) == 2)
                                  or (len(parts) == 3 and parts[1] == "tile" and parts[2].isdigit()))
    if not ok:
        raise InputError(
            f"VAE tile {text!r}: use 'auto', 'off', a tile size in pixels such as 512 (exact), "
            "'512:tile' (independent tiles) or '512:tile:96' (with 96 px overlap)"
        )
    mode = parts[1] if len(parts) > 1 else "frame"
    extra = {"tile_overlap": int(parts[2])} if len(parts) == 3 else {}
    return VAETiling(tile_size=int(parts[0]), mode=mode, **extra)


def parse_dit_batch(text: str) -> int | str:
    """'auto' or a whole number of frames (>= 1) -> the MemoryOptions value."""
    value = text.strip().lower()
    if value == AUTO:
        return AUTO
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise InputError(f"DiT batch {text!r}: use 'auto' or a whole number of frames such as 21 (4n+1 avoids padding)")


def format_bytes(n: float) -> str:
    """Bytes as '7.41 GiB' / '612 MiB'."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
