"""The DiT's in-place fast paths (rotation in place, SwiGLU worked a few rows at a time) give exactly the
values of the plain whole-tensor formulas, at lengths that do not divide into the step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seedvr2_core.dit.blocks import SwiGLU
from seedvr2_core.dit.rope import apply_rope_, rotation


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("length", [1, 31, 69])
def test_rotation_equals_the_float32_complex_product_narrowed(dtype, length):
    g = torch.Generator().manual_seed(length)
    x = torch.randn(3, length, 4, 16, generator=g).to(dtype)
    rot = rotation(torch.randn(length, 6, generator=g) * 10)
    pairs = rot.shape[-1]
    expected = x.float().clone()
    turned = torch.view_as_complex(expected[..., : 2 * pairs].reshape(3, length, 4, pairs, 2).contiguous())
    expected[..., : 2 * pairs] = torch.view_as_real(turned * rot[:, None, :]).reshape(3, length, 4, 2 * pairs)
    got = apply_rope_(x.clone(), rot)
    assert torch.equal(got, expected.to(dtype))  # the dims past the rotated pairs are untouched, too


@pytest.mark.parametrize("rows", [1, 7, 300])
def test_swiglu_equals_silu_of_the_gate_times_the_value(rows):
    torch.manual_seed(rows)
    mlp = SwiGLU(64, 4096).to(torch.bfloat16).requires_grad_(False)  # 4096 bf16 values a row: 128 rows a step
    for weight in mlp.parameters():  # the pack's Linear leaves its weights to the loader: give them values
        weight.normal_(0, 0.1)
    x = torch.randn(rows, 64, dtype=torch.bfloat16)
    out = torch.empty(rows, 64, dtype=torch.bfloat16)
    mlp.forward_into(x, out)
    # The same matmuls (their bf16 rounding depends on the kernel and thread count), the elementwise part whole.
    hidden = F.silu(mlp.proj_in_gate(x)) * mlp.proj_in(x)
    expected = torch.empty_like(out)
    assert torch.equal(out, mlp.proj_out.forward_into(hidden, expected))
