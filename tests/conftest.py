"""Shared fixtures: where the official reference data lives, and loaders for it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    path = Path(os.environ.get("SEEDVR2_REFERENCE_DIR", REPO.parent / "shared" / "reference"))
    if not (path / "FACTS.md").is_file():
        raise RuntimeError(
            f"SeedVR2 reference data not found at {path}: put it at ../shared/reference "
            "or point SEEDVR2_REFERENCE_DIR at it."
        )
    return path


@pytest.fixture(scope="session")
def reference() -> Path:
    return reference_dir()


@pytest.fixture(scope="session")
def golden(reference):
    """golden("dit_tiny_3b") -> (json dict, weights path); golden_io("dit_tiny_3b") -> tensors."""

    def get(name: str):
        return json.loads((reference / "golden" / f"{name}.json").read_text()), reference / "golden" / f"{name}.safetensors"

    return get


@pytest.fixture(scope="session")
def golden_io(reference):
    cache: dict[str, dict] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = load_file(str(reference / "golden" / f"{name}_io.safetensors"))
        return cache[name]

    return get


def pytest_terminal_summary(terminalreporter):
    """The hostile-input fuzz tests' totals per reader (tests/hostile.py), when any ran in this process."""
    from hostile import TALLIES

    for name, t in sorted(TALLIES.items()):
        terminalreporter.write_line(
            f"hostile {name}: {t.inputs} inputs ({t.refused} refused), slowest {t.slowest * 1000:.1f} ms, "
            f"Python peak up to {t.python_peak / 1024:.0f} KiB and {t.python_ratio:.1f}x the input (inputs of 1 KiB "
            "or more)")


@pytest.fixture(scope="module")
def one_thread():
    """PyTorch on one thread for a module of tiny models: on a shared 2-core machine, waiting on a busy second
    OpenMP thread costs milliseconds per op, many times the work itself."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
