"""The memory plan on a CUDA GPU: the estimate bounds `torch.cuda.max_memory_allocated`, phases take turns."""

from __future__ import annotations

import pytest
import torch

from pipeline_models import tiny_models
from seedvr2_core import restore
from seedvr2_core.memory_options import MemoryOptions
from seedvr2_core.runtime import Runtime

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU: the estimate is checked against torch.cuda.max_memory_allocated"
)
OPTS = dict(batch_size=5, overlap=0, output_dtype=torch.float32)


@pytest.fixture(scope="module")
def models(reference):
    return tiny_models(reference)


@pytest.mark.parametrize("memory", [MemoryOptions(budget=1 << 30), MemoryOptions(budget=1 << 30, blocks_to_swap="all")])
def test_each_phase_stays_under_its_estimate_and_frames_match(models, memory):
    dit, vae, text = models
    g = torch.Generator().manual_seed(0)
    frames = (torch.rand(5, 128, 192, 3, generator=g) * 255).to(torch.uint8)
    expected = restore(frames, dit, vae, text, **OPTS)  # on the CPU
    with Runtime(dit, vae, "cuda", memory) as runtime:
        out = restore(frames, dit, vae, text, **OPTS, runtime=runtime)
        for phase, measured in runtime.measured.items():
            estimate = runtime.plan.phase({"sample": "DiT step"}.get(phase, phase)).total
            assert measured <= estimate, (phase, measured, estimate)
    assert all(t.device.type == "cpu" for t in dit.state_dict().values())  # closed: weights back home
    torch.testing.assert_close(out, expected, atol=2e-3, rtol=0)  # CUDA kernels vs CPU kernels
