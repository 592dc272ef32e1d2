"""Block swapping with weights stored quantised (GGUF) or in fp8: the stored bytes travel, outputs match."""

from __future__ import annotations

import pytest
import torch

from dit_io import case_inputs
from seedvr2_core import BlockSwapper, load_dit
from seedvr2_core.convert import convert_checkpoint
from seedvr2_core.weights import QuantizedTensor


@pytest.mark.parametrize("to,suffix", [("q4_k", ".gguf"), ("q8_0", ".gguf"), ("fp8_e4m3fn", ".safetensors")])
def test_swapping_quantised_models_moves_stored_bytes(golden, golden_io, tmp_path, to, suffix):
    info, weights = golden("dit_tiny_3b")
    path = tmp_path / f"tiny{suffix}"
    convert_checkpoint(weights, path, to, config=info["config_overrides_vs_official"])
    model = load_dit(path)
    inputs = case_inputs(golden_io("dit_tiny_3b"), "B")[:5]
    resident = model(*inputs)
    stored = sum(t.nbytes for b in model.blocks for t in b.state_dict().values())
    kinds = {type(t) for b in model.blocks for t in b.state_dict().values()}
    assert (QuantizedTensor in kinds) == suffix.endswith(".gguf")
    with BlockSwapper(model, len(model.blocks), "cpu") as swapper:
        assert torch.equal(model(*inputs), resident)
        assert swapper.bytes_last_forward == stored  # quantised/fp8 bytes, not dequantised ones
    fp32 = sum(t.numel() * 4 for b in model.blocks for t in b.state_dict().values())
    assert stored < 0.5 * fp32
