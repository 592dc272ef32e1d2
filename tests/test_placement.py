"""Model placement: whole models or swapped DiT blocks, chosen from a byte budget, loaded and unloaded at will."""

from __future__ import annotations

import pytest
import torch

from seedvr2_core import InputError, load_dit, load_vae
from seedvr2_core.make_test_models import DIT_FILE, VAE_FILE, write_test_models
from seedvr2_core.placement import Placement, blocks_for_budget, tensor_bytes


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = write_test_models(tmp_path_factory.mktemp("models"))
    return load_dit(folder / DIT_FILE), load_vae(folder / VAE_FILE)


def test_the_budget_picks_the_fewest_blocks_that_fit(models):
    dit, _ = models
    total = tensor_bytes(dit)
    sizes = [sum(p.nbytes for p in b.parameters()) + sum(t.nbytes for t in b.buffers()) for b in dit.blocks]

    def need(n: int) -> int:  # device bytes with the first n blocks swapped: the rest plus two swap buffers
        return total - sum(sizes[:n]) + (2 * max(sizes[:n]) if n else 0)

    assert blocks_for_budget(dit, total) == 0 and blocks_for_budget(dit, 0) == len(sizes)
    for budget in sorted({need(n) for n in range(len(sizes) + 1)} | {need(len(sizes)) + 1, total - 1}):
        picked = blocks_for_budget(dit, budget)
        assert need(picked) <= budget and all(need(m) > budget for m in range(picked)), budget


def test_load_and_unload_leave_the_outputs_unchanged(models):
    dit, vae = models
    x = torch.randn(1, 3, 5, 32, 32)
    before = vae.encode(x)
    for placement in (Placement(vae, "cpu"), Placement(dit, "cpu", blocks_to_swap=None)):
        assert not placement.loaded and placement.loaded_bytes == 0
        placement.load(budget=tensor_bytes(placement.model) // 2)
        assert placement.loaded and placement.loaded_bytes > 0
        placement.load()  # no-op when loaded
        if placement.model is dit:
            assert placement.swapped_blocks > 0  # half the model's bytes: some blocks must stay at home
        placement.unload()
        assert not placement.loaded and placement.swapped_blocks == 0 and placement.unload() == 0
    assert torch.equal(vae.encode(x), before)


def test_only_a_dit_swaps_blocks(models):
    _, vae = models
    with pytest.raises(InputError, match="no blocks to swap"):
        Placement(vae, "cpu", blocks_to_swap=2)
