"""Truncated, forged and random GGUF files fail fast with CheckpointError naming the file.

Forged headers cover each field the reader trusts; then hypothesis throws random bytes and mutations
of a valid small model at the whole read path (open, every tensor raw and decoded) under
tests/hostile.py's watch: only CheckpointError comes out, within 1 s, with Python allocations
(tracemalloc) within 8x the file size and native ones (tensor buffers, decoding) within 16x + 32 MiB
of address space; the declared tensor bytes never exceed the file.
"""

from __future__ import annotations

import os
import struct
import tempfile

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hostile import check_hostile, fuzz_settings, mutated

from seedvr2_core.errors import CheckpointError
from seedvr2_core.weights import open_source
from seedvr2_core.weights.gguf_file import GGUFFile  # noqa: F401  imported before any allocation is measured
from tests.gguf_build import (ARRAY, F32_T, STRING, U8, U32, U64, f32_tensor_file, gguf_bytes, kv, kv_int_array,
                              kv_string, string, tensor_info, u32, u64, write_small_model)

F32, Q8_0, Q4_1 = 0, 8, 3
ONE_F32 = [tensor_info("w", (4,), F32, 0)]
DATA = np.arange(4, dtype="<f4").tobytes()
BIG = 2**63
PYTHON_FACTOR = 8

FORGED = {
    "empty": b"",
    "magic": b"GGUG" + b"\0" * 60,
    "version 1": gguf_bytes(version=1),
    "version 7": gguf_bytes(version=7),
    "big-endian": b"GGUF" + struct.pack(">I", 3) + b"\0" * 16,
    "tensor count": gguf_bytes(n_tensors=BIG),
    "kv count": gguf_bytes(n_kv=2**40),
    "key length": gguf_bytes(kvs=[u64(2**62) + b"abc"]),
    "string length": gguf_bytes(kvs=[kv("k", STRING, u64(10**9) + b"x")]),
    "numeric array count": gguf_bytes(kvs=[kv("k", ARRAY, u32(U8) + u64(2**61))]),
    "string array count": gguf_bytes(kvs=[kv("k", ARRAY, u32(STRING) + u64(2**60) + string("a"))]),
    "nested arrays": gguf_bytes(kvs=[kv("k", ARRAY, (u32(ARRAY) + u64(1)) * 6 + u32(U8) + u64(0))]),
    "value type": gguf_bytes(kvs=[kv("k", 13, b"\0" * 8)]),
    "array type": gguf_bytes(kvs=[kv("k", ARRAY, u32(42) + u64(1) + b"\0" * 8)]),
    "utf-8 key": gguf_bytes(kvs=[kv(b"\xff\xfe", U32, u32(1))]),
    "duplicate key": gguf_bytes(kvs=[kv_string("k", "a"), kv_string("k", "b")]),
    "duplicate tensor": gguf_bytes(infos=ONE_F32 * 2, data=DATA),
    "no dims": gguf_bytes(infos=[tensor_info("w", (), F32, 0)], data=DATA),
    "five dims": gguf_bytes(infos=[tensor_info("w", (1, 1, 1, 1, 4), F32, 0)], data=DATA),
    "type code": gguf_bytes(infos=[tensor_info("w", (4,), 99, 0)], data=DATA),
    "unsupported type": gguf_bytes(infos=[tensor_info("w", (32,), Q4_1, 0)], data=b"\0" * 20),
    "row not whole blocks": gguf_bytes(infos=[tensor_info("w", (31,), Q8_0, 0)], data=b"\0" * 34),
    "offset past end": gguf_bytes(infos=[tensor_info("w", (4,), F32, 2**40)], data=DATA),
    "misaligned offset": gguf_bytes(infos=[tensor_info("w", (4,), F32, 4)], data=DATA * 2),
    "truncated data": gguf_bytes(infos=ONE_F32, data=DATA[:-1]),
    "huge dims": gguf_bytes(infos=[tensor_info("w", (2**32, 2**32), F32, 0)], data=DATA),
    "dim beyond int64": gguf_bytes(infos=[tensor_info("w", (32, 2**63 + 32, 0), Q8_0, 0)], data=DATA),
    "overlap": gguf_bytes(infos=[tensor_info("a", (8,), F32, 0), tensor_info("b", (8,), F32, 0)], data=DATA * 2),
    "alignment 0": gguf_bytes(kvs=[kv("general.alignment", U32, u32(0))], infos=ONE_F32, data=DATA),
    "alignment 3": gguf_bytes(kvs=[kv("general.alignment", U32, u32(3))], infos=ONE_F32, data=DATA),
    "alignment u64": gguf_bytes(kvs=[kv("general.alignment", U64, u64(32))], infos=ONE_F32, data=DATA),
    "orig_shape numel": gguf_bytes(kvs=[kv_int_array("comfy.gguf.orig_shape.w", [3, 2])], infos=ONE_F32, data=DATA),
    "orig_shape floats": gguf_bytes(kvs=[kv("comfy.gguf.orig_shape.w", ARRAY, u32(F32_T) + u64(2) + DATA[:8])],
                                    infos=ONE_F32, data=DATA),
    "cut in tensor infos": gguf_bytes(infos=ONE_F32, data=DATA)[:40],
}


@pytest.mark.parametrize("name", sorted(FORGED))
def test_forged_header_fails_with_checkpoint_error(tmp_path, name):
    path = tmp_path / "model.gguf"
    path.write_bytes(FORGED[name])
    with pytest.raises(CheckpointError, match=str(path).replace(".", r"\.")):
        source = open_source(path)
        for key in source.keys():
            source.get(key, "cpu", torch.float32)


def test_the_valid_counterparts_load(tmp_path):
    """The forged cases' building blocks, put together correctly, give a readable file."""
    path = tmp_path / "model.gguf"
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    path.write_bytes(f32_tensor_file(values))
    source = open_source(path)
    assert source.keys() == ["w"] and torch.equal(source.get("w"), torch.from_numpy(values))
    path.write_bytes(gguf_bytes(kvs=[kv_int_array("comfy.gguf.orig_shape.w", [2, 2])], infos=ONE_F32, data=DATA))
    assert open_source(path).shape("w") == (2, 2)


def read_everything(path: str) -> int:
    """Open `path` and read every tensor raw and decoded; returns the declared tensor bytes."""
    source = open_source(path)
    try:
        declared = sum(info.nbytes for info in source.source.header.tensors.values())
        for key in source.keys():
            source.get(key)
            source.get(key, "cpu", torch.float32)
        return declared
    finally:
        source.close()


def check_bytes(blob: bytes, path: str) -> None:
    declared = []
    check_hostile(lambda p: declared.append(read_everything(p)), blob, path, PYTHON_FACTOR, "GGUF")
    assert all(d <= len(blob) for d in declared)


@pytest.fixture(scope="module")
def valid_model(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("gguf") / "valid.gguf"
    write_small_model(path, extra_tensors=24)  # ~4 KiB
    read_everything(str(path))  # first use: lazy initialisation inside torch is not the reader's doing
    return path.read_bytes()


@fuzz_settings(300)
@given(blob=st.one_of(st.binary(max_size=2048), st.binary(max_size=2048).map(lambda b: b"GGUF\x03\0\0\0" + b)))
def test_random_bytes(valid_model, blob):
    with tempfile.TemporaryDirectory() as d:
        check_bytes(blob, os.path.join(d, "random.gguf"))


@fuzz_settings(900)
@given(data=st.data())
def test_mutated_valid_file(valid_model, data):
    blob = data.draw(mutated(valid_model, keep=4))
    with tempfile.TemporaryDirectory() as d:
        check_bytes(blob, os.path.join(d, "mutated.gguf"))
