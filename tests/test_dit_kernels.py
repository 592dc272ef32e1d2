"""The DiT's in-place fast paths (rotation in place, q/k norm and rotation and SwiGLU worked a few rows at a
time) give the values of the plain whole-tensor formulas, at lengths that do not divide into the step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seedvr2_core.dit.blocks import SwiGLU
from seedvr2_core.dit import rope
from seedvr2_core.dit.rope import apply_rope_, norm_rope_, rotation


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
    got = apply_rope_(x.clone(), rot[:, None, :])
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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows, rotated", [(1, 1), (13, 13), (40, 40), (40, 27), (40, 0)])
def test_norm_and_rotation_of_q_and_k_equal_the_formula_in_float64(monkeypatch, dtype, rows, rotated):
    """RMSNorm of q and k (each with its weight) then RoPE on the first `rotated` rows, on a strided view of
    a packed qkv, 8 rows a step; v untouched. Float32: within float32 rounding; bfloat16: rounded once."""
    monkeypatch.setattr(rope, "CHUNK_BYTES", 8 * 2 * 4 * 16 * 4)  # 8 rows a step
    g = torch.Generator().manual_seed(rows + rotated)
    qkv = (torch.randn(rows, 3, 4, 16, generator=g) * 3).to(dtype)
    weight = (torch.rand(2, 1, 16, generator=g) + 0.5).to(dtype)
    rot = rotation(torch.randn(rotated, 6, generator=g) * 10) if rotated else None
    eps = 1e-5
    x = qkv[:, :2].double()
    y = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps) * weight.double()
    if rotated:
        pairs = torch.view_as_complex(y[:rotated, ..., :12].unflatten(-1, (6, 2)).contiguous())
        y[:rotated, ..., :12] = torch.view_as_real(pairs * rot.to(torch.complex128)[:, None, None, :]).flatten(-2)
    v = qkv[:, 2].clone()
    norm_rope_(qkv[:, :2], weight, rot, eps)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2**-8, "atol": 2**-8}
    torch.testing.assert_close(qkv[:, :2].double(), y.to(dtype).double(), **tol)
    assert torch.equal(qkv[:, 2], v)


def test_varlen_packing_gives_the_dense_groups_result(monkeypatch):
    """The varlen path (flash-attn, SageAttention; CUDA only) packs every window back to back with
    cu_seqlens and unpacks the output. Run it on CPU with each packed sequence attended on its own."""
    import dataclasses

    from seedvr2_core import make_dit_config
    from seedvr2_core.attention import BACKENDS, AttentionBackend
    from seedvr2_core.dit import window_attention as wa

    def each_sequence(backend, q, k, v, cu_seqlens, max_len):
        assert q.dtype == torch.bfloat16 and q.is_contiguous() and int(cu_seqlens[-1]) == len(q)
        bounds = cu_seqlens.tolist()
        return torch.cat([
            F.scaled_dot_product_attention(*(x[a:b].float().transpose(0, 1) for x in (q, k, v))).transpose(0, 1)
            for a, b in zip(bounds, bounds[1:])
        ]).bfloat16()

    monkeypatch.setattr(wa, "varlen_attention", each_sequence)
    cfg = dataclasses.replace(make_dit_config("seedvr2-3b"), window=(2, 2, 2))
    plan = wa.build_window_plan(cfg, [(3, 4, 6), (2, 3, 3)], [4, 2], True, torch.device("cpu"))
    qkv = torch.randn(len(plan.rot), 3, 2, 8, generator=torch.Generator().manual_seed(0))
    varlen = AttentionBackend("packed", lambda device: True, varlen=True)
    got = wa.window_attention(qkv, plan, varlen)
    expected = wa.window_attention(qkv, plan, BACKENDS["sdpa"], bf16_qkv=True)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-2)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_window_attention_with_padded_windows_equals_each_window_attended_in_float64(dtype, tol):
    """On the CPU windows run padded to the kernel's aligned length (keys masked): every video row and the
    text rows' mean over windows must still be exactly the per-window attention (official loop, float64)."""
    import dataclasses

    from seedvr2_core import make_dit_config
    from seedvr2_core.attention import BACKENDS
    from seedvr2_core.dit import window_attention as wa

    cfg = dataclasses.replace(make_dit_config("seedvr2-3b"), window=(2, 2, 2))
    grids, txt_lens = [(3, 5, 7), (2, 3, 4)], [5, 3]
    plan = wa.build_window_plan(cfg, grids, txt_lens, True, torch.device("cpu"), rope=False)
    assert any(g.index.shape[1] > g.length for g in plan.groups)  # some windows do run padded
    n_vid = sum(t * h * w for t, h, w in grids)
    qkv = torch.randn(n_vid + sum(txt_lens), 3, 2, 8, generator=torch.Generator().manual_seed(1)).to(dtype)
    got = wa.window_attention(qkv, plan, BACKENDS["sdpa"])

    x = qkv.double()
    expected = torch.zeros(len(x), 2, 8, dtype=torch.float64)
    for group in plan.groups:
        for rows in group.index[:, : group.length]:
            q, k, v = x[rows].unbind(1)  # (L, H, D) each
            weights = torch.softmax(torch.einsum("lhd,mhd->hlm", q, k) / 8**0.5, dim=-1)
            out = torch.einsum("hlm,mhd->lhd", weights, v)
            expected[rows[: group.vid_len]] = out[: group.vid_len]
            expected[rows[group.vid_len :]] += out[group.vid_len :] / plan.txt_windows[rows[group.vid_len :] - n_vid].double()
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("length", [1, 31, 32, 58, 122, 186, 353, 384, 385, 500, 2488])
def test_only_short_cpu_windows_run_padded_and_never_shorter(length):
    """CPU windows up to 384 tokens run at the next multiple of 32 (keys past `length` masked); longer ones
    and every CUDA window run as they are. The mask hides exactly the padding."""
    from seedvr2_core.attention import dense_length, key_padding_mask

    padded = dense_length(length, "cpu")
    assert padded >= length and (padded == length if length > 384 else padded % 32 == 0 and padded - length < 32)
    assert dense_length(length, "cuda") == length
    mask = key_padding_mask(length, padded, "cpu")
    if padded == length:
        assert mask is None
    else:
        assert torch.equal(torch.isinf(mask.view(-1)), torch.arange(padded) >= length)
