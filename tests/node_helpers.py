"""The pack imported the way ComfyUI imports it, and tiny model files under the official names."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Iterator

import torch

REPO = Path(__file__).resolve().parents[1]
PACK = "seedvr2_pack"  # ComfyUI names the package after its folder; any name works the same


def load_pack():
    """The checkout as a package (as ComfyUI's load_custom_node does): nodes/ then imports its core relatively."""
    if PACK not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK, REPO / "__init__.py",
                                                      submodule_search_locations=[str(REPO)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK] = module
        spec.loader.exec_module(module)
    return sys.modules[PACK]


def pack_module(name: str):
    """A submodule of the pack, e.g. pack_module("seedvr2_core.host") (the pack's own copy of the core)."""
    load_pack()
    return importlib.import_module(f"{PACK}.{name}")


def spec_by_id(node_id: str):
    return {s.node_id: s for s in pack_module("nodes").SPECS}[node_id]


def run_node(node_id: str, **values):
    """Run a node as ComfyUI would with the widget defaults, overridden by `values`; returns its outputs."""
    spec = spec_by_id(node_id)
    args = {**spec.defaults(), **values}
    missing = [i.name for i in spec.inputs if i.name not in args]
    assert not missing, f"{node_id} needs {missing}"
    return spec.run(**{i.name: args[i.name] for i in spec.inputs})


def output_types():
    """Declared output type -> the Python type a node's result of that type must be."""
    handles, clip = pack_module("seedvr2_core.handles"), pack_module("seedvr2_core.clip")
    return {"SEEDVR2_DIT": handles.DiTHandle, "SEEDVR2_VAE": handles.VAEHandle, "SEEDVR2_LATENT": clip.ClipLatent,
            "IMAGE": torch.Tensor, "VIDEO": str}


@contextlib.contextmanager
def installed_test_models(folder: Path) -> Iterator[Path]:
    """Tiny models written to folder/SEEDVR2 and found there by the nodes (the CLI's models folder variable),
    with PyTorch on one thread: on tiny tensors a second thread only adds contention on a shared machine."""
    from seedvr2_core.make_test_models import write_test_models

    models = write_test_models(folder)
    host = pack_module("seedvr2_core.host")
    previous, threads = os.environ.get(host.MODELS_ENV), torch.get_num_threads()
    os.environ[host.MODELS_ENV] = str(models)
    torch.set_num_threads(1)
    try:
        yield models
    finally:
        torch.set_num_threads(threads)
        if previous is None:
            os.environ.pop(host.MODELS_ENV, None)
        else:
            os.environ[host.MODELS_ENV] = previous
