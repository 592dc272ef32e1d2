"""Hand-assembled GGUF bytes for the reader's tests (valid, forged and broken headers).

Layout written here from the GGUF specification (little-endian): magic, u32 version, u64 tensor
count, u64 key/value count, key/values (string key, u32 type, value), tensor infos (string name,
u32 n_dims, u64 dims innermost first, u32 type, u64 offset), padding to the alignment, data.
"""

from __future__ import annotations

import struct

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter

U8, U32, U64, I32, F32_T = (GGUFValueType.UINT8, GGUFValueType.UINT32, GGUFValueType.UINT64,
                            GGUFValueType.INT32, GGUFValueType.FLOAT32)
STRING, ARRAY = GGUFValueType.STRING, GGUFValueType.ARRAY


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return u64(len(b)) + b


def kv(key: str | bytes, vtype: int, payload: bytes) -> bytes:
    return string(key) + u32(vtype) + payload


def kv_string(key: str, value: str) -> bytes:
    return kv(key, STRING, string(value))


def kv_int_array(key: str, values, etype: int = I32) -> bytes:
    fmt = {I32: "<i", U32: "<I", U64: "<Q", U8: "<B"}[etype]
    return kv(key, ARRAY, u32(etype) + u64(len(values)) + b"".join(struct.pack(fmt, v) for v in values))


def tensor_info(name: str | bytes, dims, ggml_type: int, offset: int) -> bytes:
    return string(name) + u32(len(dims)) + b"".join(u64(d) for d in dims) + u32(ggml_type) + u64(offset)


def gguf_bytes(kvs=(), infos=(), data: bytes = b"", version: int = 3, alignment: int = 32,
               n_tensors: int | None = None, n_kv: int | None = None) -> bytes:
    """A GGUF file from raw key/value and tensor-info pieces; counts default to the pieces given."""
    head = b"GGUF" + u32(version) + u64(len(infos) if n_tensors is None else n_tensors)
    head += u64(len(kvs) if n_kv is None else n_kv) + b"".join(kvs) + b"".join(infos)
    return head + b"\0" * (-len(head) % alignment) + data


def f32_tensor_file(values: np.ndarray, name: str = "w") -> bytes:
    """A valid file holding one F32 tensor of `values` (shape as given, stored with reversed dims)."""
    dims = tuple(reversed(values.shape))
    return gguf_bytes(infos=[tensor_info(name, dims, GGMLQuantizationType.F32, 0)],
                      data=values.astype("<f4").tobytes())


def write_small_model(path, seed: int = 0, extra_tensors: int = 0) -> None:
    """A small valid GGUF through the gguf package's writer: several tensor types and metadata kinds, and
    `extra_tensors` more F16 matrices (to make it larger)."""
    from seedvr2_core.weights.quantize import quantize_q4_k, quantize_q8_0
    import torch

    g = torch.Generator().manual_seed(seed)
    writer = GGUFWriter(str(path), arch="seedvr2")
    writer.add_string("seedvr2_config", '{"vid_dim": 64}')
    writer.add_uint32("test.count", 7)
    writer.add_array("test.names", ["a", "bc"])
    writer.add_array("comfy.gguf.orig_shape.model.diffusion_model.q4k", [16, 16])
    writer.add_tensor("model.diffusion_model.vec", torch.randn(8, generator=g).numpy())
    writer.add_tensor("f16", torch.randn(2, 8, generator=g).half().numpy())
    q8 = quantize_q8_0(torch.randn(2, 32, generator=g)).numpy().reshape(2, 34)
    writer.add_tensor("q8", q8, raw_dtype=GGMLQuantizationType.Q8_0)
    q4k = quantize_q4_k(torch.randn(1, 256, generator=g)).numpy().reshape(1, 144)
    writer.add_tensor("model.diffusion_model.q4k", q4k, raw_dtype=GGMLQuantizationType.Q4_K)
    for i in range(extra_tensors):
        writer.add_tensor(f"blocks.{i}.weight", torch.randn(4, 8, generator=g).half().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
