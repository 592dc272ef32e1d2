"""GGML block formats dequantised with torch, on whichever device holds the bytes.

Bit layouts are those of GGML's block structs (ggml `ggml-common.h`: `block_q4_0`, `block_q5_0`,
`block_q8_0`, `block_q4_K`, `block_q5_K`, `block_q6_K`; QK_K = 256, K_SCALE_SIZE = 12), all
little-endian, with float16 block scales:

| type | values/block | bytes | layout (byte offsets)                                      | value              |
|------|--------------|-------|-------------------------------------------------------------|--------------------|
| Q4_0 | 32           | 18    | d f16 [0:2], 16 bytes of nibbles (low: 0..15, high: 16..31)  | d * (q - 8)        |
| Q5_0 | 32           | 22    | d [0:2], qh u32 [2:6] (bit j = 5th bit of j), nibbles [6:22] | d * (q - 16)       |
| Q8_0 | 32           | 34    | d [0:2], 32 x int8                                           | q * d              |
| Q4_K | 256          | 144   | d, dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles | d*sc*q - dmin*m    |
| Q5_K | 256          | 176   | as Q4_K plus qh [16:48] (bit j of byte l: sub-block j, pos l)| d*sc*q - dmin*m    |
| Q6_K | 256          | 210   | ql [0:128], qh [128:192], 16 x int8 scales, d [208:210]      | d*sc*(q - 32)      |

Each formula multiplies in the same order as the `gguf` package's numpy reference (`gguf.quants`), so
float32 results are bitwise equal to it (tests/test_quant_dequant.py checks every type).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

# type name -> (values per block, bytes per block)
BLOCK_SIZES: dict[str, tuple[int, int]] = {
    "Q4_0": (32, 18),
    "Q5_0": (32, 22),
    "Q8_0": (32, 34),
    "Q4_K": (256, 144),
    "Q5_K": (256, 176),
    "Q6_K": (256, 210),
}


def _half(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """(n, bytes) uint8 -> (n, 1) float32: the float16 stored at byte `start` of every block."""
    return blocks[:, start : start + 2].view(torch.float16).float()


def _nibbles(packed: torch.Tensor) -> torch.Tensor:
    """(..., k) uint8 -> (..., 2, k): the low nibbles, then the high nibbles."""
    return torch.stack((packed & 0x0F, packed >> 4), dim=-2)


def _bit_planes(packed: torch.Tensor, shifts: Sequence[int], mask: int) -> torch.Tensor:
    """(..., k) uint8 -> (..., len(shifts), k): (packed >> s) & mask for every shift s."""
    s = torch.tensor(shifts, dtype=torch.uint8, device=packed.device).view(-1, 1)
    return (packed.unsqueeze(-2) >> s) & mask


def _q4_0(b: torch.Tensor) -> torch.Tensor:
    q = _nibbles(b[:, 2:]).reshape(len(b), 32).to(torch.int16) - 8
    return _half(b, 0) * q.float()


def _q5_0(b: torch.Tensor) -> torch.Tensor:
    high = _bit_planes(b[:, 2:6], range(8), 1).transpose(-1, -2).reshape(len(b), 32)  # bit j of the u32
    low = _nibbles(b[:, 6:]).reshape(len(b), 32)
    q = (low | (high << 4)).to(torch.int16) - 16
    return _half(b, 0) * q.float()


def _q8_0(b: torch.Tensor) -> torch.Tensor:
    return b[:, 2:].view(torch.int8).float() * _half(b, 0)


def _k_scales(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 12) uint8 -> 8 six-bit scales and 8 six-bit mins per super-block, each (n, 8) float32.

    Sub-blocks 0..3 keep their scale/min in the low 6 bits of bytes 0..3 / 4..7; sub-blocks 4..7 take
    the low/high nibble of bytes 8..11 plus the top 2 bits of bytes 0..3 / 4..7.
    """
    a, b, c = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    scales = torch.cat((a & 63, (c & 0x0F) | ((a >> 6) << 4)), dim=1)
    mins = torch.cat((b & 63, (c >> 4) | ((b >> 6) << 4)), dim=1)
    return scales.float(), mins.float()


def _k_affine(b: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Q4_K / Q5_K: q (n, 8, 32) float32 sub-block values -> (n, 256) of d*sc*q - dmin*m."""
    sc, m = _k_scales(b[:, 4:16])
    d = (_half(b, 0) * sc).unsqueeze(-1)  # (n, 8, 1)
    dm = (_half(b, 2) * m).unsqueeze(-1)
    return (d * q - dm).reshape(len(b), 256)


def _q4_k(b: torch.Tensor) -> torch.Tensor:
    # 32-byte chunk c holds sub-block 2c in its low nibbles and 2c+1 in its high nibbles.
    q = _nibbles(b[:, 16:144].reshape(len(b), 4, 32)).reshape(len(b), 8, 32)
    return _k_affine(b, q.float())


def _q5_k(b: torch.Tensor) -> torch.Tensor:
    low = _nibbles(b[:, 48:176].reshape(len(b), 4, 32)).reshape(len(b), 8, 32)
    high = _bit_planes(b[:, 16:48], range(8), 1)  # (n, 8, 32): bit j of qh[l] belongs to sub-block j
    return _k_affine(b, (low | (high << 4)).float())


def _q6_k(b: torch.Tensor) -> torch.Tensor:
    n = len(b)
    # Two halves of 128 values; in each, 64 bytes of nibbles give values 0..63 (low) and 64..127
    # (high), and 32 bytes of 2-bit pairs give the top bits of values l, l+32, l+64, l+96.
    low = _nibbles(b[:, 0:128].reshape(n, 2, 64)).reshape(n, 2, 128)
    high = _bit_planes(b[:, 128:192].reshape(n, 2, 32), (0, 2, 4, 6), 3).reshape(n, 2, 128)
    q = ((low | (high << 4)).to(torch.int16) - 32).float().reshape(n, 16, 16)
    scales = b[:, 192:208].view(torch.int8).float()  # (n, 16), one per 16 values
    return ((_half(b, 208) * scales).unsqueeze(-1) * q).reshape(n, 256)


KERNELS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Q4_0": _q4_0,
    "Q5_0": _q5_0,
    "Q8_0": _q8_0,
    "Q4_K": _q4_k,
    "Q5_K": _q5_k,
    "Q6_K": _q6_k,
}


def quantized_nbytes(qtype: str, numel: int) -> int:
    """Bytes that `numel` values take in block format `qtype` (numel must be a whole number of blocks)."""
    values, nbytes = BLOCK_SIZES[qtype]
    assert numel % values == 0, (qtype, numel)
    return numel // values * nbytes


def dequantize(raw: torch.Tensor, qtype: str, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """raw (nbytes,) uint8 blocks of `qtype` -> `shape` tensor of `dtype` on raw's device."""
    values, nbytes = BLOCK_SIZES[qtype]
    assert raw.dtype == torch.uint8 and raw.numel() == quantized_nbytes(qtype, math.prod(shape)), (raw.shape, shape)
    blocks = raw.contiguous().view(-1, nbytes)
    return KERNELS[qtype](blocks).to(dtype).reshape(tuple(shape))
