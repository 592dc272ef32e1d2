"""The converter: round trips through every format, layouts, metadata, the VAE, and its command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from gguf import GGUFReader, GGUFValueType
from safetensors.torch import load_file

from seedvr2_core import load_dit, make_dit_config
from seedvr2_core.convert import main
from seedvr2_core.weights import open_source
from seedvr2_core.weights.dequant import dequantize
from seedvr2_core.weights.quantize import quantize_q8_0
from tests.conftest import REPO

def golden_config(golden, name: str):
    """The config the golden model is known to run with (its test against the official outputs)."""
    info, weights = golden(name)
    return load_dit(weights, config=info["config_overrides_vs_official"]).config


def read_all(path) -> dict[str, torch.Tensor]:
    source = open_source(path)
    try:
        return {k: source.get(k, "cpu", torch.float32) for k in source.keys()}
    finally:
        source.close()


@pytest.mark.parametrize("name", ["dit_tiny_3b", "dit_tiny_7b"])
def test_pth_to_fp16_to_q8_0_round_trip(golden, tmp_path, name):
    _, weights = golden(name)
    original = load_file(str(weights))
    pth, fp16, q8 = tmp_path / "model.pth", tmp_path / "model_fp16.safetensors", tmp_path / "model_q8_0.gguf"
    torch.save(original, pth)
    assert main([str(pth), str(fp16), "--to", "fp16"]) == 0
    assert main([str(fp16), str(q8), "--to", "q8_0"]) == 0
    model = load_dit(q8)
    assert model.config == golden_config(golden, name)
    decoded = read_all(q8)
    assert sorted(decoded) == sorted(original)
    for key, w in original.items():
        halved = w.half().float()
        if w.ndim == 2:  # Q8_0 of the fp16 weights, block for block
            expected = dequantize(quantize_q8_0(halved), "Q8_0", w.shape)
        else:
            expected = halved  # vectors: F32 copies of the fp16 values
        assert torch.equal(decoded[key], expected), key


def test_module_entry_point_runs(golden, tmp_path):
    _, weights = golden("dit_tiny_7b")
    out = tmp_path / "tiny_bf16.safetensors"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "seedvr2_core.convert", str(weights), str(out), "--to", "bf16"],
                         capture_output=True, text=True, cwd=REPO, env=env)
    assert run.returncode == 0, run.stderr
    assert "bfloat16" in run.stderr  # the summary names the storage types
    assert all(v.dtype == torch.bfloat16 for v in load_file(str(out)).values())


def test_config_metadata_is_carried_and_used(golden, tmp_path):
    """A field that shapes cannot reveal (the window) travels in seedvr2_config through every step."""
    _, weights = golden("dit_tiny_3b")
    fp8, q4 = tmp_path / "fp8.safetensors", tmp_path / "q4.gguf"
    assert main([str(weights), str(fp8), "--to", "fp8_e4m3fn", "--config", '{"window": [2, 3, 3]}']) == 0
    assert main([str(fp8), str(q4), "--to", "q4_k"]) == 0
    for path in (fp8, q4):
        source = open_source(path)
        assert json.loads(source.metadata["seedvr2_config"]) == {"window": [2, 3, 3]}
        source.close()
        assert load_dit(path).config == make_dit_config("seedvr2-3b", {
            **golden("dit_tiny_3b")[0]["config_overrides_vs_official"], "window": (2, 3, 3)})


def test_gguf_layouts_follow_comfyui_gguf(golden, tmp_path):
    """Rows that are not whole blocks are stored flattened with comfy.gguf.orig_shape (read by gguf itself)."""
    _, weights = golden("dit_tiny_3b")
    q4, q8 = tmp_path / "q4.gguf", tmp_path / "q8.gguf"
    main([str(weights), str(q4), "--to", "q4_k"])
    main([str(weights), str(q8), "--to", "q8_0"])
    reader = GGUFReader(q4)
    field = reader.get_field("comfy.gguf.orig_shape.vid_in.proj.weight")
    assert field.types == [GGUFValueType.ARRAY, GGUFValueType.INT32] and field.contents() == [64, 132]
    tensors = {t.name: t for t in reader.tensors}
    assert tensors["vid_in.proj.weight"].tensor_type.name == "Q4_K"
    assert [int(d) for d in tensors["vid_in.proj.weight"].shape] == [256, 33]
    assert tensors["blocks.0.ada.vid.attn_scale"].tensor_type.name == "F32"
    q8_fields = GGUFReader(q8).fields
    assert "comfy.gguf.orig_shape.blocks.0.attn.proj_qkv.vid.weight" not in q8_fields  # 64-wide rows fit Q8_0
    assert "comfy.gguf.orig_shape.vid_in.proj.weight" in q8_fields  # 132 does not


def test_gguf_back_to_safetensors(golden, tmp_path):
    _, weights = golden("dit_tiny_7b")
    q8, back = tmp_path / "q8.gguf", tmp_path / "back_fp16.safetensors"
    main([str(weights), str(q8), "--to", "q8_0"])
    main([str(q8), str(back), "--to", "fp16"])
    decoded, restored = read_all(q8), load_file(str(back))
    assert sorted(restored) == sorted(decoded)
    for key, value in restored.items():
        assert value.dtype == torch.float16 and torch.equal(value, decoded[key].half()), key


def test_vae_weights_convert_generically(golden, tmp_path):
    """5-D convolution kernels (beyond GGUF's 4 dims) keep their shapes; fp8 keeps them in fp8."""
    _, weights = golden("vae_tiny")
    original = load_file(str(weights))
    q8, fp8 = tmp_path / "vae_q8_0.gguf", tmp_path / "vae_fp8.safetensors"
    assert main([str(weights), str(q8), "--to", "q8_0"]) == 0
    assert main([str(weights), str(fp8), "--to", "fp8_e4m3fn"]) == 0
    decoded = read_all(q8)
    assert {k: tuple(v.shape) for k, v in decoded.items()} == {k: tuple(v.shape) for k, v in original.items()}
    for key, w in original.items():
        if w.ndim != 2:  # convolutions in F16, vectors in F32
            assert torch.equal(decoded[key], w.half().float() if w.ndim > 1 else w), key
    stored = load_file(str(fp8))
    for key, w in original.items():
        assert stored[key].dtype == (torch.float8_e4m3fn if w.ndim >= 2 else torch.float32), key


def test_fp8_clamps_to_the_format_range(tmp_path):
    src, dst = tmp_path / "big.safetensors", tmp_path / "big_fp8.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.tensor([[1e5, -1e6], [0.5, 1e-3]]), "b": torch.tensor([1e5])}, str(src))
    for to, limit in (("fp8_e4m3fn", 448.0), ("fp8_e5m2", 57344.0)):
        assert main([str(src), str(dst), "--to", to]) == 0
        out = load_file(str(dst))
        assert out["w"].float()[0].tolist() == [limit, -limit]
        assert out["b"].dtype == torch.float32 and out["b"].item() == 1e5


def test_prefixes_and_ride_along_tensors(tmp_path):
    from safetensors.torch import save_file

    src, dst = tmp_path / "comfy.safetensors", tmp_path / "out.gguf"
    save_file({"model.diffusion_model.x.weight": torch.randn(4, 32), "positive_conditioning": torch.randn(3, 8)}, str(src))
    assert main([str(src), str(dst), "--to", "q8_0"]) == 0
    names = [t.name for t in GGUFReader(dst).tensors]
    assert names == ["x.weight", "positive_conditioning"]


@pytest.mark.parametrize("args,code,message", [
    (["--to", "fp8_e4m3fn"], 1, "GGUF has no fp8 type"),
    (["--to", "q8_0", "--config", "[1]"], 1, "JSON object"),
    (["--to", "q8_0", "--config", "{"], 2, "not valid JSON"),
])
def test_command_line_errors(golden, tmp_path, capsys, args, code, message):
    _, weights = golden("dit_tiny_3b")
    assert main([str(weights), str(tmp_path / "out.gguf"), *args]) == code
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.gguf").exists()


def test_wrong_suffix_and_missing_input(golden, tmp_path, capsys):
    _, weights = golden("dit_tiny_3b")
    assert main([str(weights), str(tmp_path / "out.safetensors"), "--to", "q4_k"]) == 1
    assert "GGUF block format" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.pth"), str(tmp_path / "o.safetensors"), "--to", "fp16"]) == 1
    assert "does not exist" in capsys.readouterr().err
