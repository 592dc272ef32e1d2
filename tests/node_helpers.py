"""The pack imported the way ComfyUI imports it, and tiny model files under the official names."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PACK = "seedvr2_pack"  # ComfyUI names the package after its folder; any name works the same


def load_pack():
    """The checkout as a package (as ComfyUI's load_custom_node does): nodes/ then imports its core relatively."""
    if PACK not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK] = module
        spec.loader.exec_module(module)
    return sys.modules[PACK]


def pack_module(name: str):
    """A submodule of the pack, e.g. pack_module("seedvr2_core.host") (the pack's own copy of the core)."""
    load_pack()
    return importlib.import_module(f"{PACK}.{name}")
