"""A fault in the middle of a node run (out of memory, Ctrl-C), inside a DiT block while
blocks are swapped or between VAE tiles: the error reaches the caller (Ctrl-C unchanged; out of memory as the
runtime's MemoryPlanError, which says what ran out and what to do, with the original error as its cause), the models are left
exactly as they were (weights in place, no observer or hook left, VAE tiling restored), and the next
run gives the output of a run that never failed.

Faults are raised from a forward pre-hook on a submodule of a transformer block (mid-block, after block
swapping moved that block's weights) or from a host interrupt check (between VAE tiles, where Cancel
also lands); neither replaces any of the pack's code.
"""

from __future__ import annotations

import pytest
import torch

from node_helpers import installed_test_models, pack_module, run_node
from seedvr2_core.make_test_models import DIT_FILE, VAE_FILE

host = pack_module("seedvr2_core.host")
errors = pack_module("seedvr2_core.errors")
# OutOfMemoryError is a RuntimeError, so it stands for any exception; KeyboardInterrupt is not an Exception.
FAULTS = {"out of memory": torch.OutOfMemoryError, "Ctrl-C": KeyboardInterrupt}
SEEN_AS = {"out of memory": errors.MemoryPlanError, "Ctrl-C": KeyboardInterrupt}  # what the caller gets


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    with installed_test_models(tmp_path_factory.mktemp("models")) as folder:
        yield folder


@pytest.fixture(scope="module", params=[0, 2], ids=["resident", "2 blocks swapped"])
def run(models, request):
    """(run(), model state now) for a DiT loaded with `param` swapped blocks; run() upscales fixed frames."""
    dit = run_node("SeedVR2LoadDiT", model=DIT_FILE, blocks_to_swap=request.param)[0]
    vae = run_node("SeedVR2LoadVAE", model=VAE_FILE, tiling="tile", tile_size=16)[0]
    images = torch.rand(9, 24, 32, 3, generator=torch.Generator().manual_seed(3))

    def upscale() -> torch.Tensor:
        return run_node("SeedVR2Upscale", image=images, dit=dit, vae=vae, resolution=32, batch_size=5, overlap=1)[0]

    return upscale, dit, vae


def state(dit, vae) -> dict:
    """Everything a run may change and must put back."""
    modules = [*dit.model.modules(), *vae.model.modules()]
    return {
        "weights": {k: (v.data_ptr(), v.device, v.dtype)
                    for m in (dit.model, vae.model) for k, v in m.state_dict().items()},
        "hooks": sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in modules),
        "observers": list(dit.model.observers),
        "tiling": vae.model.tiling,
        "placement": [(h.placement.loaded, h.placement.loaded_bytes, h.placement.swapped_blocks) for h in (dit, vae)],
    }


@pytest.fixture(scope="module")
def uninterrupted(run):
    upscale, dit, vae = run
    return upscale(), state(dit, vae)


def raising(fault: type[BaseException]):
    def hook(*_):
        raise fault("injected by the test")

    return hook


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_inside_a_transformer_block_leaves_the_models_as_they_were(run, uninterrupted, fault):
    upscale, dit, vae = run
    expected, before = uninterrupted
    hook = dit.model.blocks[1].attn.register_forward_pre_hook(raising(FAULTS[fault]))
    try:
        with pytest.raises(SEEN_AS[fault], match="injected by the test") as raised:
            upscale()
        assert isinstance(raised.value.__cause__ or raised.value, FAULTS[fault])
    finally:
        hook.remove()
    assert state(dit, vae) == before
    assert torch.equal(upscale(), expected)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_between_vae_tiles_leaves_the_models_as_they_were(run, uninterrupted, fault):
    upscale, dit, vae = run
    expected, before = uninterrupted
    calls = []
    with host.interrupt_checks(lambda: calls.append(None)):
        upscale()
    at = len(calls) - 3  # near the end: in the last batch's decode

    def check():
        calls.append(None)
        if len(calls) == at:
            raising(FAULTS[fault])()

    calls.clear()
    with host.interrupt_checks(check), pytest.raises(SEEN_AS[fault], match="injected by the test") as raised:
        upscale()
    assert isinstance(raised.value.__cause__ or raised.value, FAULTS[fault])
    assert len(calls) == at and state(dit, vae) == before
    assert torch.equal(upscale(), expected)
