"""oneDNN-packed linear weights on the CPU (seedvr2_core/cpu_pack.py): the same results as the plain
layers, on real layers and the tiny golden DiT, and the runtime's use of them for a run."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from pipeline_models import tiny_models
from seedvr2_core import cpu_pack, load_dit
from seedvr2_core.dit.blocks import SwiGLU
from seedvr2_core.memory_options import MemoryOptions
from seedvr2_core.noise import SeededNoise
from seedvr2_core.ops import Linear
from seedvr2_core.runtime import Runtime

BF16 = torch.bfloat16
pytestmark = pytest.mark.skipif(not cpu_pack.available(BF16),
                                reason="needs a CPU with bfloat16 matrix support in oneDNN (AMX or AVX-512 BF16)")


def packed_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if getattr(m, "packed", None) is not None]


def linear(i: int, o: int, bias: bool, seed: int) -> Linear:
    g = torch.Generator().manual_seed(seed)
    layer = Linear(i, o, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(o, i, generator=g) / i**0.5)
        if bias:
            layer.bias.copy_(torch.randn(o, generator=g))
    layer.weight.data = layer.weight.data.to(BF16)  # the bias stays float32, as small vectors may be stored
    return layer


@pytest.mark.parametrize("rows", [1, 7, 58, 320])
@pytest.mark.parametrize("bias", [False, True])
def test_a_packed_linear_computes_what_the_plain_one_does(rows, bias):
    layer = linear(96, 160, bias, rows)
    x = torch.randn(rows, 96, generator=torch.Generator().manual_seed(1)).to(BF16)
    plain = layer(x)
    with torch.inference_mode(), cpu_pack.packed_linears(layer, BF16) as count:
        packed, into = layer(x), layer.forward_into(x, torch.empty(rows, 160, dtype=BF16))
    assert count == 1 and layer.packed is None  # the copy is gone after the block
    exact = x.double() @ layer.weight.double().t() + (layer.bias.double() if bias else 0)
    for y in (packed, into):
        assert y.dtype == BF16
        # Both round one float32 accumulation to bfloat16 (8 bits): within two roundings of the exact product.
        torch.testing.assert_close(y.double(), exact, rtol=2**-7, atol=2**-7)
        torch.testing.assert_close(y.float(), plain.float(), rtol=2**-7, atol=2**-7)


def test_the_fused_swiglu_is_silu_of_the_gate_times_the_value():
    mlp = SwiGLU(64, 192)
    for i, layer in enumerate((mlp.proj_in_gate, mlp.proj_in, mlp.proj_out)):
        src = linear(layer.in_features, layer.out_features, False, 10 + i)
        layer.weight = torch.nn.Parameter(src.weight.data, requires_grad=False)
    x = torch.randn(50, 64, generator=torch.Generator().manual_seed(2)).to(BF16)
    plain = mlp.forward_into(x, None)
    with torch.inference_mode(), cpu_pack.packed_linears(mlp, BF16) as count:
        fused = mlp.forward_into(x, None)
    assert count == 3
    w = [layer.weight.double() for layer in (mlp.proj_in_gate, mlp.proj_in, mlp.proj_out)]
    exact = (F.silu(x.double() @ w[0].t()) * (x.double() @ w[1].t())) @ w[2].t()
    scale = exact.abs().max()
    # Three bfloat16 roundings in a row (hidden, product, output): relative 2^-7 of the output's range.
    assert (fused.double() - exact).abs().max() <= scale * 2**-7
    assert (fused.double() - plain.double()).abs().max() <= scale * 2**-7


def test_the_tiny_dit_is_the_same_with_packed_weights_and_untouched_after(golden):
    info, path = golden("dit_tiny_3b")
    model = load_dit(path, config=info["config_overrides_vs_official"], dtype=BF16)
    g = torch.Generator().manual_seed(0)
    t, h, w = 2, 6, 10
    args = (torch.randn(t * h * w, 33, generator=g).to(BF16), torch.randn(9, model.config.txt_in_dim, generator=g).to(BF16),
            torch.tensor([[t, h, w]]), torch.tensor([[9]]), torch.tensor([1000.0]))
    before = {k: (v.data_ptr(), v.clone()) for k, v in model.state_dict().items()}
    with torch.inference_mode():
        plain = model(*args)
        with cpu_pack.packed_linears(model, BF16) as count:
            assert count == len([m for m in model.modules() if isinstance(m, Linear)])
            packed = model(*args)
    assert not packed_modules(model)
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(after[k].data_ptr() == p and torch.equal(after[k], v) for k, (p, v) in before.items())
    # bfloat16 through every block: the two differ by roundings only (one fewer in SwiGLU)
    torch.testing.assert_close(packed.float(), plain.float(), rtol=0.05, atol=0.05)
    assert (packed.float() - plain.float()).abs().mean() < 0.01 * plain.float().abs().mean()


def test_only_plain_16_bit_cpu_weights_are_packed(golden):
    info, path = golden("dit_tiny_3b")
    model = load_dit(path, config=info["config_overrides_vs_official"])  # float32: the plain path
    with cpu_pack.packed_linears(model, torch.float32) as count:
        assert count == 0 and not packed_modules(model)
    assert cpu_pack.packed_bytes(model, torch.float32) == 0
    model = load_dit(path, config=info["config_overrides_vs_official"], dtype=BF16)
    linears = [m for m in model.modules() if isinstance(m, Linear)]
    assert cpu_pack.packed_bytes(model, BF16) == sum(m.weight.nbytes for m in linears)


def test_the_cpu_runtime_packs_for_its_run_and_drops_the_copies_when_closed(reference, caplog):
    dit, vae, text = tiny_models(reference)
    dit = load_dit(dit.state_dict(), config=dit.config, dtype=BF16)
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(2, 6, 10, 16, generator=g)
    with caplog.at_level(logging.INFO), Runtime(dit, vae, "cpu") as runtime:
        first = runtime.sample(cond, 0, SeededNoise(0), text)
        assert packed_modules(dit)
        second = runtime.sample(cond, 0, SeededNoise(0), text)
    assert not packed_modules(dit)
    assert torch.equal(first, second)  # packed once, the same for every batch
    assert any("linear weights packed for oneDNN" in r.getMessage() for r in caplog.records)


def test_a_plan_without_room_for_the_copies_runs_with_plain_weights(reference, caplog):
    dit, vae, text = tiny_models(reference)
    dit = load_dit(dit.state_dict(), config=dit.config, dtype=BF16)
    probe = Runtime(dit, vae, "cpu", MemoryOptions(budget=1 << 34))
    peak = probe.prepare(48, 80, 5, len(text)).peak
    need = cpu_pack.packed_bytes(dit, BF16)
    cond = torch.randn(2, 6, 10, 16, generator=torch.Generator().manual_seed(0))
    with caplog.at_level(logging.INFO), Runtime(dit, vae, "cpu", MemoryOptions(budget=peak + need // 2)) as runtime:
        runtime.prepare(48, 80, 5, len(text))
        runtime.sample(cond, 0, SeededNoise(0), text)
        assert not packed_modules(dit)
    assert any("not packed for oneDNN" in r.getMessage() for r in caplog.records)
