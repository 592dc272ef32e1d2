"""Truncated, forged and random .safetensors files fail fast with CheckpointError naming the file.

Forged headers cover each field the reader trusts (length, JSON, names, dtypes, shapes, offsets,
metadata). Hypothesis then feeds random bytes, random JSON headers and mutations of a valid file through
the whole read path (open, every tensor) under tests/hostile.py's watch: only CheckpointError, within
1 s, Python allocations within PYTHON_FACTOR times the file size, native ones within 16x + 32 MiB.

PYTHON_FACTOR: the JSON decoder builds Python objects from the header; its worst case is nested empty
arrays, a 72-byte list per 2 bytes of text (measured here as ~39x: test_json_expansion_stays_within_
the_bound). Headers are capped at 100 MiB before decoding.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hostile import check_hostile, fuzz_settings, mutated
from seedvr2_core.errors import CheckpointError
from seedvr2_core.weights import open_source
from seedvr2_core.weights.safetensors_file import MAX_HEADER_BYTES, SAFETENSORS_DTYPES, write_safetensors

PYTHON_FACTOR = 48
DTYPES = sorted(SAFETENSORS_DTYPES)


def st_bytes(header: dict | bytes | str, data: bytes = b"", length: int | None = None) -> bytes:
    """A .safetensors file from a header (dict -> JSON) and the data section; `length` forges the length field."""
    blob = header if isinstance(header, bytes) else (header if isinstance(header, str) else json.dumps(header)).encode()
    return struct.pack("<Q", len(blob) if length is None else length) + blob + data


def entry(dtype: str = "F32", shape=(2,), offsets=(0, 8)) -> dict:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


ONE = {"w": entry()}
DATA = struct.pack("<2f", 1.5, -2.0)

FORGED = {
    "empty": b"",
    "seven bytes": b"\x10\0\0\0\0\0\0",
    "length beyond the file": st_bytes(ONE, DATA, length=10**6),
    "length 2**64-1": st_bytes(ONE, DATA, length=2**64 - 1),
    "not utf-8": st_bytes(b'{"w\xff\xfe": 1}'),
    "not json": st_bytes(b"{'w': 1}"),
    "json array": st_bytes("[1, 2]"),
    "deep nesting": st_bytes("[" * 100000 + "]" * 100000),
    "integer of 5000 digits": st_bytes('{"w": {"dtype": "F32", "shape": [' + "9" * 5000 + "]}}"),
    "duplicate tensor": st_bytes('{"w": %s, "w": %s}' % (json.dumps(entry()), json.dumps(entry())), DATA),
    "duplicate metadata key": st_bytes('{"__metadata__": {"a": "1", "a": "2"}}'),
    "metadata not a map": st_bytes({"__metadata__": ["a"]}),
    "metadata number value": st_bytes({"__metadata__": {"a": 1}}),
    "metadata zero": st_bytes({"__metadata__": 0}),
    "entry not an object": st_bytes({"w": [1, 2]}),
    "dtype missing": st_bytes({"w": {"shape": [2], "data_offsets": [0, 8]}}, DATA),
    "dtype unknown": st_bytes({"w": entry(dtype="F4")}, DATA),
    "dtype not a string": st_bytes({"w": entry(dtype=["F32"])}, DATA),
    "shape missing": st_bytes({"w": {"dtype": "F32", "data_offsets": [0, 8]}}, DATA),
    "shape negative": st_bytes({"w": entry(shape=(-2,))}, DATA),
    "shape float": st_bytes({"w": entry(shape=(2.0,))}, DATA),
    "shape bool": st_bytes({"w": entry(shape=(True, 2))}, DATA),
    "shape 9 dims": st_bytes({"w": entry(shape=(1,) * 8 + (2,))}, DATA),
    "shape beyond int64": st_bytes({"w": entry(shape=(2**63, 0))}, DATA),
    "offsets missing": st_bytes({"w": {"dtype": "F32", "shape": [2]}}, DATA),
    "offsets of three": st_bytes({"w": entry(offsets=(0, 4, 8))}, DATA),
    "offsets reversed": st_bytes({"w": entry(offsets=(8, 0))}, DATA),
    "offsets negative": st_bytes({"w": entry(offsets=(-8, 0))}, DATA),
    "offsets float": st_bytes({"w": entry(offsets=(0.0, 8))}, DATA),
    "offsets past the data": st_bytes({"w": entry(offsets=(0, 8))}, DATA[:7]),
    "offsets 2**64": st_bytes({"w": entry(offsets=(2**64, 2**64 + 8))}, DATA),
    "size not shape x dtype": st_bytes({"w": entry(dtype="F16")}, DATA),
    "huge shape small span": st_bytes({"w": entry(shape=(2**31, 2**31))}, DATA),
    "overlap": st_bytes({"a": entry(shape=(2,), offsets=(0, 8)), "b": entry(shape=(1,), offsets=(4, 8))}, DATA),
}


def read_everything(path: str) -> None:
    """Open `path` and read every tensor, as loading a model does."""
    source = open_source(path)
    try:
        for key in source.keys():
            source.get(key)
    finally:
        source.close()


@pytest.mark.parametrize("name", sorted(FORGED))
def test_forged_header_fails_with_checkpoint_error_naming_the_file(tmp_path, name):
    path = tmp_path / "model.safetensors"
    path.write_bytes(FORGED[name])
    with pytest.raises(CheckpointError, match=str(path).replace(".", r"\.")) as caught:
        read_everything(str(path))
    assert "download it again" in str(caught.value)


def test_a_header_length_above_the_limit_is_refused_before_reading_it(tmp_path):
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", MAX_HEADER_BYTES + 1))
        f.truncate(MAX_HEADER_BYTES + 64)  # sparse: no disk space, no bytes to read
    with pytest.raises(CheckpointError, match=f"above the {MAX_HEADER_BYTES}-byte limit"):
        read_everything(str(path))


def test_the_valid_counterparts_load(tmp_path):
    """The forged cases' pieces put together correctly give the tensors back."""
    path = tmp_path / "model.safetensors"
    path.write_bytes(st_bytes({"__metadata__": {"a": "1"}, **ONE, "e": entry(shape=(0, 3), offsets=(8, 8))}, DATA))
    source = open_source(path)
    assert torch.equal(source.get("w"), torch.tensor([1.5, -2.0])) and source.get("e").shape == (0, 3)
    assert source.metadata == {"a": "1"}
    source.close()


# -- fuzzing --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def valid_file(tmp_path_factory) -> bytes:
    """A valid file of ~6 KiB through our writer: several dtypes, an empty tensor, metadata."""
    path = tmp_path_factory.mktemp("st") / "valid.safetensors"
    g = torch.Generator().manual_seed(0)
    tensors = {"empty": torch.zeros(0, 4), "b": torch.randint(0, 9, (3, 2, 2), generator=g, dtype=torch.int32)}
    for i in range(24):
        tensors[f"blocks.{i}.weight"] = torch.randn(4, 8, generator=g).to([torch.float16, torch.bfloat16][i % 2])
        tensors[f"blocks.{i}.bias"] = torch.randn(8, generator=g)
    write_safetensors(path, {k: (t.dtype, tuple(t.shape)) for k, t in tensors.items()}, tensors.__getitem__,
                      {"seedvr2_config": '{"vid_dim": 64}'})
    read_everything(str(path))  # first use: lazy initialisation inside torch is not the reader's doing
    return path.read_bytes()


def check(blob: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        check_hostile(read_everything, blob, os.path.join(folder, "fuzz.safetensors"), PYTHON_FACTOR, "safetensors")


@fuzz_settings(250)
@given(blob=st.binary(max_size=2048))
def test_random_bytes(valid_file, blob):
    check(blob)


@fuzz_settings(250)
@given(body=st.binary(max_size=2048), extra=st.integers(0, 64))
def test_random_bytes_behind_a_plausible_length(valid_file, body, extra):
    check(struct.pack("<Q", max(len(body) - extra, 0)) + body)


SIZES = st.one_of(st.integers(0, 40), st.sampled_from([2**31, 2**32, 2**62, 2**63 - 1, 2**63, 2**64]))
JSON_JUNK = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.text(max_size=8), st.integers(-2, 99))


@st.composite
def headers(draw) -> bytes:
    """A JSON header whose entries are mostly well-formed, with sizes and offsets that may not fit."""
    header: dict = {}
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=6), st.one_of(st.text(max_size=6), JSON_JUNK),
                                                      max_size=3))
    offset = 0
    for i in range(draw(st.integers(0, 6))):
        dtype = draw(st.one_of(st.sampled_from(DTYPES), JSON_JUNK))
        shape = draw(st.one_of(st.lists(SIZES, max_size=4), st.lists(JSON_JUNK, max_size=3), JSON_JUNK))
        size = draw(st.one_of(st.integers(0, 64), SIZES))
        begin = draw(st.one_of(st.just(offset), SIZES))
        offsets = draw(st.one_of(st.just([begin, begin + size]), st.lists(st.one_of(SIZES, JSON_JUNK), max_size=3)))
        header[draw(st.one_of(st.just(f"t{i}"), st.text(max_size=4)))] = {"dtype": dtype, "shape": shape,
                                                                          "data_offsets": offsets}
        offset = begin + size if isinstance(begin, int) else offset
    data = draw(st.binary(max_size=256))
    return st_bytes(header, data)


@fuzz_settings(400)
@given(blob=headers())
def test_random_json_headers(valid_file, blob):
    check(blob)


@fuzz_settings(300)
@given(data=st.data())
def test_mutated_valid_file(valid_file, data):
    check(data.draw(mutated(valid_file)))


@pytest.mark.parametrize("item", ["[[[[]]]]", "[{}]", "{}", '"ab"', "1.5", '{"k": [0]}'])
def test_json_expansion_stays_within_the_bound(tmp_path, item):
    """The decoder's worst cases, 100 000 repetitions each: PYTHON_FACTOR holds, by measurement. (Their time
    grows with their size, ~1 MB here, and is not what this checks.)"""
    header = '{"a": [' + ",".join([item] * 100_000) + "]}"
    outcome = check_hostile(read_everything, st_bytes(header), str(tmp_path / "wide.safetensors"), PYTHON_FACTOR,
                            deadline=10.0)
    assert "is not an object" in str(outcome.error)
