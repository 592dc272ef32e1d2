"""QuantizedTensor: quantised bytes that keep their format through moves, copies and parameter slots."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seedvr2_core.ops import Linear, cast_weight
from seedvr2_core.weights.dequant import dequantize
from seedvr2_core.weights.qtensor import QuantizedTensor
from seedvr2_core.weights.quantize import quantize_q4_k, quantize_q8_0

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (pinned memory, device moves)")


def q8_weight(out_features: int = 8, in_features: int = 64, seed: int = 0) -> tuple[QuantizedTensor, torch.Tensor]:
    """A Q8_0 weight and the float32 values it decodes to (computed by the decoder directly)."""
    w = torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(seed))
    raw = quantize_q8_0(w)
    return QuantizedTensor(raw, "Q8_0", w.shape), dequantize(raw, "Q8_0", w.shape)


def quantized_linear(weight: QuantizedTensor) -> Linear:
    out_features, in_features = weight.logical_shape
    layer = Linear(in_features, out_features, bias=False, device="meta")
    layer._parameters["weight"] = nn.Parameter(weight, requires_grad=False)
    return layer


def assert_same_quantized(a: torch.Tensor, b: QuantizedTensor) -> None:
    assert isinstance(a, QuantizedTensor)
    assert (a.qtype, a.logical_shape) == (b.qtype, b.logical_shape)
    assert torch.equal(a.raw_bytes().cpu(), b.raw_bytes().cpu())


def test_construction_checks_the_byte_count():
    raw = quantize_q4_k(torch.randn(2, 256))
    assert QuantizedTensor(raw, "Q4_K", (2, 256)).numel() == 2 * 144
    with pytest.raises(ValueError):
        QuantizedTensor(raw, "Q4_K", (3, 256))
    with pytest.raises(ValueError):
        QuantizedTensor(raw.float(), "Q4_K", (2, 256))
    with pytest.raises(ValueError):
        QuantizedTensor(raw, "Q3_K", (2, 256))


def test_copy_like_operations_keep_the_format():
    q, _ = q8_weight()
    for moved in (q.to("cpu"), q.to("cpu", non_blocking=True), q.cpu(), q.detach(), q.clone(), q.contiguous(), q.data):
        assert_same_quantized(moved, q)
    assert_same_quantized(copy.deepcopy(q), q)
    buffer = io.BytesIO()
    torch.save({"w": q}, buffer)
    buffer.seek(0)
    assert_same_quantized(torch.load(buffer, weights_only=False)["w"], q)


def test_parameter_slot_and_module_moves_keep_the_bytes():
    q, decoded = q8_weight()
    layer = quantized_linear(q)
    assert isinstance(layer.weight, nn.Parameter) and not layer.weight.requires_grad
    layer.to(torch.bfloat16)  # float casts of a module skip non-float tensors
    layer.to("cpu")
    assert_same_quantized(layer.weight, q)
    assert_same_quantized(layer.state_dict()["weight"], q)
    clone = copy.deepcopy(layer)
    assert isinstance(clone.weight, nn.Parameter)
    assert_same_quantized(clone.weight, q)
    assert layer.weight.numel() * layer.weight.element_size() == q.numel()  # memory accounting sees the bytes
    layer.weight.data = q.raw_bytes().clone()  # block-swap style: new storage, same parameter object
    assert_same_quantized(layer.weight, q)
    x = torch.randn(5, q.logical_shape[1])
    torch.testing.assert_close(layer(x), F.linear(x, decoded), atol=0, rtol=0)


def test_arithmetic_sees_plain_bytes_and_float_casts_refuse():
    q, _ = q8_weight()
    assert type(q + 1) is torch.Tensor and (q + 1).dtype == torch.uint8
    with pytest.raises(TypeError, match="dequantize_as"):
        q.to(torch.float32)
    with pytest.raises(TypeError, match="dequantize_as"):
        q.to("cpu", torch.float16)
    for cast in (q.float, q.half, q.bfloat16, q.double):
        with pytest.raises(TypeError, match="dequantize_as"):
            cast()


def test_cast_weight_decodes_in_the_input_dtype():
    q, decoded = q8_weight()
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        like = torch.empty(0, dtype=dtype)
        got = cast_weight(q, like)
        assert type(got) is torch.Tensor and got.dtype == dtype and got.shape == decoded.shape
        torch.testing.assert_close(got, decoded.to(dtype), atol=0, rtol=0)


@CUDA
def test_device_moves_carry_quantised_bytes():
    q, decoded = q8_weight()
    for moved in (q.pin_memory(), q.cuda(), q.to("cuda", non_blocking=True)):
        assert_same_quantized(moved, q)
    layer = quantized_linear(q).cuda()
    assert_same_quantized(layer.weight, q)
    assert layer.weight.device.type == "cuda"
    x = torch.randn(5, q.logical_shape[1], device="cuda")
    torch.testing.assert_close(layer(x), F.linear(x, decoded.cuda()), atol=1e-5, rtol=1e-5)
    on_gpu = q.dequantize_as(torch.bfloat16, "cuda")  # decoded where the compute happens
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), decoded.bfloat16(), atol=0, rtol=0)
    layer.weight.data = layer.weight.data.to("cpu")  # block-swap style move back
    assert_same_quantized(layer.weight, q)
    assert layer.weight.device.type == "cpu"
