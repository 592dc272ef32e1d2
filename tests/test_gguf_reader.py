"""The GGUF reader on valid files, against the gguf package's own reader (an independent parser)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize as reference_dequantize

from seedvr2_core.errors import CheckpointError
from seedvr2_core.weights import open_source
from seedvr2_core.weights.gguf_file import GGUFFile
from seedvr2_core.weights.gguf_header import read_gguf_header
from seedvr2_core.weights.quantize import quantize_q8_0
from tests.gguf_build import write_small_model


def reference_field(reader: GGUFReader, key: str):
    field = reader.get_field(key)
    value = field.contents()
    return value


@pytest.fixture()
def small_model(tmp_path):
    path = tmp_path / "small.gguf"
    write_small_model(path)
    return path


def test_header_agrees_with_the_gguf_package_reader(small_model):
    ours = read_gguf_header(small_model)
    ref = GGUFReader(small_model)
    assert list(ours.tensors) == [t.name for t in ref.tensors]
    for t in ref.tensors:
        info = ours.tensors[t.name]
        assert info.ggml_type == t.tensor_type.name
        assert info.dims == tuple(int(d) for d in t.shape)
        assert (info.begin, info.nbytes) == (t.data_offset, t.n_bytes)
    visible = [k for k in ref.fields if not k.startswith("GGUF.")]
    assert list(ours.fields) == visible
    for key in visible:
        value = ours.fields[key]
        value = value.tolist() if isinstance(value, np.ndarray) else value
        assert value == reference_field(ref, key), key
    assert ours.alignment == ref.alignment


def test_tensors_decode_like_the_reference_and_honour_orig_shape(small_model):
    ref = {t.name: t for t in GGUFReader(small_model).tensors}
    reader = GGUFFile(small_model)
    try:
        assert reader.metadata == {"general.architecture": "seedvr2", "seedvr2_config": '{"vid_dim": 64}'}
        assert reader.shape("model.diffusion_model.q4k") == (16, 16)  # from comfy.gguf.orig_shape
        assert reader.shape("f16") == (2, 8) and reader.shape("q8") == (2, 32)  # reversed GGUF dims
        assert reader.quant_type("q8") == "Q8_0" and reader.quant_type("f16") is None
        assert reader.dtype("f16") == torch.float16 and reader.dtype("q8") == torch.uint8
        for name, t in ref.items():
            expected = reference_dequantize(np.array(t.data), t.tensor_type).reshape(-1)
            got = reader.get(name, "cpu", torch.float32)
            assert tuple(got.shape) == reader.shape(name)
            np.testing.assert_array_equal(got.reshape(-1).numpy(), expected)
    finally:
        reader.close()


def test_host_prefix_is_stripped(small_model):
    source = open_source(small_model)
    try:
        assert sorted(source.keys()) == ["f16", "q4k", "q8", "vec"]
        assert source.shape("q4k") == (16, 16) and source.quant_type("q4k") == "Q4_K"
        assert source.get("vec").dtype == torch.float32
    finally:
        source.close()


def test_custom_alignment_and_scalar_metadata(tmp_path):
    path = tmp_path / "aligned.gguf"
    writer = GGUFWriter(str(path), arch="seedvr2")
    writer.data_alignment = 64
    writer.add_custom_alignment(64)
    writer.add_float64("test.f64", 0.5)
    writer.add_bool("test.flag", True)
    writer.add_array("test.nested", [[1, 2], [3]])
    weights = torch.randn(3, 64)
    writer.add_tensor("a", np.arange(5, dtype=np.float32))
    writer.add_tensor("b", quantize_q8_0(weights).numpy().reshape(3, 68), raw_dtype=GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    header = read_gguf_header(path)
    assert header.alignment == 64 and all(t.begin % 64 == 0 for t in header.tensors.values())
    assert header.fields["test.f64"] == 0.5 and header.fields["test.flag"] is True
    assert [a.tolist() for a in header.fields["test.nested"]] == [[1, 2], [3]]
    assert header.field_types["test.nested"] == (GGUFValueType.ARRAY, GGUFValueType.ARRAY)
    reader = GGUFFile(path)
    try:
        assert torch.equal(reader.get("a"), torch.arange(5, dtype=torch.float32))
        assert reader.get("b").dequantize_as().shape == (3, 64)
    finally:
        reader.close()


def test_unsupported_block_format_is_named(tmp_path):
    path = tmp_path / "q4_1.gguf"
    writer = GGUFWriter(str(path), arch="seedvr2")
    writer.add_tensor("w", np.zeros((1, 20), dtype=np.uint8), raw_dtype=GGMLQuantizationType.Q4_1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(CheckpointError, match=r"q4_1\.gguf.*'w' is stored as Q4_1.*supported: F32, F16, BF16"):
        open_source(path)
