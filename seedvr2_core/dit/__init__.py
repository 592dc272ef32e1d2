"""The SeedVR2 diffusion transformer (3B and 7B), its window attention and its loader."""

from .loader import load_dit
from .model import NaDiT
from .windows import partition_windows

__all__ = ["NaDiT", "load_dit", "partition_windows"]
