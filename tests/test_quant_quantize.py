"""The converter's quantisers: Q8_0 (the gguf package's) and our own Q4_K.

Q4_K has no quantiser in the gguf package, so ours is checked from the outside: its bytes decode the
same through the gguf package's numpy reference and through ours, and its error is compared with the
gguf package's own 4-bit quantisers (Q4_0, Q4_1) on the same data.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize as reference_dequantize
from gguf.quants import quantize as reference_quantize

from seedvr2_core.weights.dequant import dequantize
from seedvr2_core.weights.quantize import quantize_q4_k, quantize_q8_0


def relative_error(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.linalg.norm(approx - exact) / np.linalg.norm(exact))


def reference_roundtrip(x: np.ndarray, qtype: str) -> np.ndarray:
    t = GGMLQuantizationType[qtype]
    return reference_dequantize(reference_quantize(x, t), t)


def weights_like(rows: int, cols: int, seed: int) -> torch.Tensor:
    """Gaussian matrix with per-row scales spread over two decades and a few outliers, like real layers."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, cols, generator=g) * torch.logspace(-2.5, -0.5, rows).unsqueeze(1)
    outliers = torch.randint(0, x.numel(), (rows,), generator=g)
    x.view(-1)[outliers] *= 8
    return x


def test_q4_k_bytes_decode_identically_with_the_reference():
    x = weights_like(64, 512, seed=0)
    raw = quantize_q4_k(x)
    assert raw.dtype == torch.uint8 and raw.numel() == x.numel() // 256 * 144
    ref = reference_dequantize(raw.numpy().reshape(-1, 144), GGMLQuantizationType.Q4_K).reshape(x.shape)
    ours = dequantize(raw, "Q4_K", x.shape).numpy()
    np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("seed", [0, 1])
def test_q4_k_error_beats_the_reference_4_bit_formats(seed):
    x = weights_like(128, 1024, seed)
    ours = dequantize(quantize_q4_k(x), "Q4_K", x.shape).numpy()
    err = relative_error(ours, x.numpy())
    errs = {q: relative_error(reference_roundtrip(x.numpy(), q), x.numpy()) for q in ("Q4_0", "Q4_1", "Q5_0")}
    print(f"relative RMS error: Q4_K (ours) {err:.4f}, " + ", ".join(f"{q} {e:.4f}" for q, e in errs.items()))
    assert err < errs["Q4_1"] < errs["Q4_0"]
    assert err > errs["Q5_0"]  # 4 bits cannot beat 5: a sanity bound from the other side


def test_q4_k_special_blocks():
    """All-zero, constant, all-positive and single-spike super-blocks."""
    x = torch.zeros(4, 256)
    x[1] = 3.0
    x[2] = torch.linspace(5.0, 6.0, 256)
    x[3, 17] = -2.5
    decoded = dequantize(quantize_q4_k(x), "Q4_K", x.shape)
    assert torch.equal(decoded[0], x[0])
    torch.testing.assert_close(decoded[1], x[1], atol=3.0 / 63 / 2 + 1e-3, rtol=0)
    assert (decoded[2] - x[2]).abs().max() < 6.0 / 15  # one 4-bit step of the full range
    torch.testing.assert_close(decoded[3], x[3], atol=2.5 / 63, rtol=0)


def test_q4_k_refuses_non_finite_values():
    x = torch.zeros(256)
    x[3] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        quantize_q4_k(x)


def test_q8_0_is_the_reference_quantiser():
    x = weights_like(16, 256, seed=3)
    raw = quantize_q8_0(x)
    expected = reference_quantize(x.numpy(), GGMLQuantizationType.Q8_0).reshape(-1)
    np.testing.assert_array_equal(raw.numpy(), expected)
    err = relative_error(dequantize(raw, "Q8_0", x.shape).numpy(), x.numpy())
    assert err < 0.01
