"""oneDNN-packed copies of a model's linear weights, for 16-bit forwards on the CPU.

On a CPU with bfloat16 matrix units (AMX, AVX-512 BF16) oneDNN multiplies with the weight in its own
blocked layout. Given PyTorch's plain layout it re-packs the weight on every call: one more pass over
each weight, and up to two weight-sized buffers, per matmul. Inside `packed_linears(model)` every eligible
`ops.Linear` computes from a copy packed once, and SwiGLU's activation and product run as fused
epilogues of its two input projections (on the float32 accumulator, so one rounding to bfloat16 fewer
than separate passes). The plain weights are left as they are: state dicts, device moves and block
swapping never see the packed copies, which exist only inside the block and add `packed_bytes(model)`
of RAM while they do.

Measured on a 2-core AMX CPU (benchmarks/dit_forward.py, 3B bf16, 5x16x16 latent): see
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from .ops import Linear

DTYPES = (torch.bfloat16,)
# The packed layout oneDNN picks depends on the expected row count; from 58 rows up it gives the same
# results as the plain call (checked in tests/test_cpu_pack.py), at 1 it changes the accumulation order.
ROWS_HINT = 4096


def available(dtype: torch.dtype) -> bool:
    """Whether this PyTorch build and CPU run oneDNN's packed 16-bit linear."""
    mkldnn = torch.ops.mkldnn
    ops = ("_reorder_linear_weight", "_linear_pointwise", "_is_mkldnn_bf16_supported")
    if dtype not in DTYPES or not torch.backends.mkldnn.is_available() or not all(hasattr(mkldnn, o) for o in ops):
        return False
    return bool(mkldnn._is_mkldnn_bf16_supported())


def _eligible(module: torch.nn.Module, dtype: torch.dtype) -> bool:
    """A pack Linear whose weight is a plain contiguous CPU tensor of `dtype` (not fp8, not GGUF blocks)."""
    if not isinstance(module, Linear):
        return False
    w, b = module.weight, module.bias
    return (type(w) in (torch.Tensor, torch.nn.Parameter) and w.device.type == "cpu" and w.dtype == dtype
            and w.is_contiguous() and (b is None or (type(b) in (torch.Tensor, torch.nn.Parameter)
                                                     and b.device.type == "cpu")))


def packed_bytes(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """RAM the packed copies of `model`'s linear weights take (0 where packing does not apply)."""
    if not available(dtype):
        return 0
    return sum(m.weight.nbytes for m in model.modules() if _eligible(m, dtype))


@contextlib.contextmanager
def packed_linears(model: torch.nn.Module, dtype: torch.dtype) -> Iterator[int]:
    """Within the block, `model`'s CPU linear layers with `dtype` weights compute from packed copies.

    Yields how many layers were packed (0 where the build or the CPU lacks the kernels). Nesting is
    allowed; the outermost block removes the copies.
    """
    packed = []
    if available(dtype):
        with torch.inference_mode():
            for m in model.modules():
                if _eligible(m, dtype) and getattr(m, "packed", None) is None:
                    weight = torch.ops.mkldnn._reorder_linear_weight(m.weight.detach(), ROWS_HINT)
                    m.packed = (weight, None if m.bias is None else m.bias.detach().to(dtype))
                    packed.append(m)
    try:
        yield len(packed)
    finally:
        for m in packed:
            m.packed = None


def swiglu(x: torch.Tensor, gate: Linear, value: Linear) -> torch.Tensor | None:
    """silu(gate(x)) * value(x) through both layers' packed weights, the activation and the product as
    fused epilogues; None unless both have packed weights for x."""
    g, v = gate.packed_for(x), value.packed_for(x)
    if g is None or v is None:
        return None
    h = torch.ops.mkldnn._linear_pointwise(x, *g, "swish", [], "")
    return torch.ops.mkldnn._linear_pointwise.binary(x, h, *v, "mul")
