"""Our torch dequantisation against the `gguf` package's numpy reference (gguf.quants), bit for bit.

Blocks are random bytes (every bit pattern of the packed values, and float16 scales that include
zeros, subnormals, infinities and NaNs) plus blocks whose scales are set to chosen edge values.
Float32 results must be bitwise equal wherever the reference is not NaN, and NaN exactly where the
reference is NaN. (When both operands of a subtraction are NaN, IEEE 754 leaves open which payload
the result carries, and numpy and torch pick differently; the position of every NaN still matches.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter
from gguf.quants import dequantize as reference_dequantize

from seedvr2_core.weights.dequant import BLOCK_SIZES, dequantize
from seedvr2_core.weights.gguf_file import GGUFFile

EDGE_HALVES = np.array(
    [0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFFFF],
    dtype=np.uint16,
)
# Byte offsets of each type's float16 scales inside a block.
HALF_OFFSETS = {"Q4_0": (0,), "Q5_0": (0,), "Q8_0": (0,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


def random_blocks(qtype: str, n: int, seed: int) -> np.ndarray:
    """(n, bytes) uint8: random blocks, then blocks with edge-value scales and all-0 / all-1 payloads."""
    rng = np.random.default_rng(seed)
    _, nbytes = BLOCK_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    edge = np.repeat(rng.integers(0, 256, size=(1, nbytes), dtype=np.uint8), 3 * len(EDGE_HALVES), axis=0)
    edge[len(EDGE_HALVES) : 2 * len(EDGE_HALVES)] = 0x00
    edge[2 * len(EDGE_HALVES) :] = 0xFF
    for i, offset in enumerate(HALF_OFFSETS[qtype]):  # K types: d and dmin take different edge values
        edge[:, offset : offset + 2] = np.tile(np.roll(EDGE_HALVES, 3 * i), 3).view(np.uint8).reshape(-1, 2)
    return np.concatenate([blocks, edge])


def assert_same_floats(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.dtype == ref.dtype == np.float32 and ours.shape == ref.shape
    nan = np.isnan(ref)
    np.testing.assert_array_equal(np.isnan(ours), nan)
    mismatched = (ours.view(np.uint32) != ref.view(np.uint32)) & ~nan
    assert not mismatched.any(), f"{mismatched.sum()} values differ, e.g. ours {ours[mismatched][:4]} ref {ref[mismatched][:4]}"


def test_block_sizes_are_ggml_sizes():
    for qtype, sizes in BLOCK_SIZES.items():
        assert GGML_QUANT_SIZES[GGMLQuantizationType[qtype]] == sizes


@pytest.mark.parametrize("qtype", sorted(BLOCK_SIZES))
def test_dequantize_is_bitwise_reference(qtype):
    blocks = random_blocks(qtype, 3000, seed=sorted(BLOCK_SIZES).index(qtype))
    values, _ = BLOCK_SIZES[qtype]
    with np.errstate(invalid="ignore", over="ignore"):
        ref = reference_dequantize(blocks, GGMLQuantizationType[qtype]).reshape(-1)
    ours = dequantize(torch.from_numpy(blocks.reshape(-1).copy()), qtype, (len(blocks) * values,)).numpy()
    assert np.isnan(ref).any() and np.isinf(ref).any() and (ref == 0).any()  # the edge cases are exercised
    assert_same_floats(ours, ref)


@pytest.mark.parametrize("qtype", sorted(BLOCK_SIZES))
def test_dequantize_to_half_precision_rounds_the_float32_result(qtype):
    blocks = random_blocks(qtype, 200, seed=7)
    values, _ = BLOCK_SIZES[qtype]
    raw = torch.from_numpy(blocks.reshape(-1).copy())
    full = dequantize(raw, qtype, (len(blocks), values))
    for dtype in (torch.float16, torch.bfloat16):
        got = dequantize(raw, qtype, (len(blocks), values), dtype)
        assert got.dtype == dtype
        torch.testing.assert_close(got, full.to(dtype), atol=0, rtol=0, equal_nan=True)


def _write_all_types(path, seed: int = 0) -> dict[str, np.ndarray]:
    """A GGUF holding one tensor of every supported type with random bytes; returns name -> bytes."""
    rng = np.random.default_rng(seed)
    writer = GGUFWriter(str(path), arch="seedvr2")
    raw = {}
    for qtype in ("F32", "F16", "BF16", *sorted(BLOCK_SIZES)):
        values, nbytes = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
        rows, row_values = 3, 2 * max(values, 32)
        data = rng.integers(0, 256, size=(rows, row_values // values * nbytes), dtype=np.uint8)
        data[0, : min(nbytes, 16)] = np.array(EDGE_HALVES[:8]).view(np.uint8)[: min(nbytes, 16)]
        raw[f"t.{qtype}"] = data
        writer.add_tensor(f"t.{qtype}", data, raw_dtype=GGMLQuantizationType[qtype])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return raw


def test_gguf_file_decodes_every_type_like_the_reference(tmp_path):
    """Through the file reader: F32/F16/BF16 and every block type, against gguf.quants on the same bytes."""
    path = tmp_path / "all_types.gguf"
    raw = _write_all_types(path)
    reader = GGUFFile(path)
    try:
        for name, data in raw.items():
            qtype = name.split(".")[1]
            with np.errstate(invalid="ignore", over="ignore"):
                ref = reference_dequantize(data, GGMLQuantizationType[qtype])
            got = reader.get(name, "cpu", torch.float32).numpy()
            assert got.shape == ref.shape, name
            assert_same_floats(got, ref)
            if reader.quant_type(name) is not None:
                stored = reader.get(name)
                assert stored.qtype == qtype and tuple(stored.logical_shape) == ref.shape
                assert np.array_equal(stored.raw_bytes().numpy(), data.reshape(-1))
                assert_same_floats(stored.dequantize_as(torch.float32).numpy(), ref)
    finally:
        reader.close()
