"""The tiny golden DiTs converted to fp8 and GGUF: they load, stay compact, and run close to fp32.

Tolerance, derived per format rather than picked: to first order the DiT's relative output error is
linear in the relative perturbation of its weights, |dy|/|y| ~ A * eps_w. The sensitivity A is
measured on the same inputs with a different, well-understood perturbation (weights rounded to bf16,
eps_w ~ 1.7e-3); eps_w of each format is measured from its decoded weights. A format passes when its
output error is at most 1.5 * A * eps_w (observed ratios to A * eps_w: 0.77 to 1.02).
Independently of any tolerance, a quantised model must compute exactly what an fp32 model holding its
decoded weights computes: fp8 up-casts and block decoding are exact in float32.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from seedvr2_core import load_dit
from seedvr2_core.convert import convert_checkpoint
from seedvr2_core.weights import open_source
from seedvr2_core.weights.qtensor import QuantizedTensor
from seedvr2_core.weights.safetensors_file import write_safetensors
from tests.dit_io import case_inputs

MODELS = {"dit_tiny_3b": "D", "dit_tiny_7b": "D"}  # single-image case: every layer, little compute
FORMATS = {"fp8_e4m3fn": "safetensors", "fp8_e5m2": "safetensors", "q8_0": "gguf", "q4_k": "gguf"}
STORED = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2, "q8_0": "Q8_0", "q4_k": "Q4_K"}
MARGIN = 1.5


def decoded_weights(path) -> dict[str, torch.Tensor]:
    source = open_source(path)
    try:
        return {k: source.get(k, "cpu", torch.float32) for k in source.keys()}
    finally:
        source.close()


def matrix_error(decoded: dict, original: dict) -> float:
    """Relative RMS error over all matrices (what the formats quantise)."""
    num = sum(float((decoded[k] - w).pow(2).sum()) for k, w in original.items() if w.ndim >= 2)
    den = sum(float(w.pow(2).sum()) for w in original.values() if w.ndim >= 2)
    return (num / den) ** 0.5


def relative(y: torch.Tensor, y0: torch.Tensor) -> float:
    return float((y - y0).norm() / y0.norm())


@pytest.fixture(scope="module")
def tiny(golden, golden_io, tmp_path_factory):
    """Per model: original weights, fp32 output, sensitivity A (from bf16), and converted files."""
    out = {}
    for name, case in MODELS.items():
        _, weights = golden(name)
        folder = tmp_path_factory.mktemp(name)
        inputs = case_inputs(golden_io(name), case)[:5]
        original = load_file(str(weights))
        y0 = load_dit(weights)(*inputs)
        bf16 = folder / "bf16.safetensors"
        convert_checkpoint(weights, bf16, "bf16")
        sensitivity = relative(load_dit(bf16)(*inputs), y0) / matrix_error(decoded_weights(bf16), original)
        files = {}
        for to, ext in FORMATS.items():
            files[to] = folder / f"{to}.{ext}"
            convert_checkpoint(weights, files[to], to)
        out[name] = dict(inputs=inputs, original=original, y0=y0, sensitivity=sensitivity, files=files)
    return out


@pytest.mark.parametrize("to", sorted(FORMATS))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_output_within_the_format_bound(tiny, name, to):
    t = tiny[name]
    model = load_dit(t["files"][to])
    y = model(*t["inputs"])
    decoded = decoded_weights(t["files"][to])
    eps_w = matrix_error(decoded, t["original"])
    err, bound = relative(y, t["y0"]), MARGIN * t["sensitivity"] * eps_w
    print(f"{name} {to}: weight error {eps_w:.3e}, A {t['sensitivity']:.2f}, output error {err:.3e}, bound {bound:.3e}")
    assert err <= bound
    exact = load_dit(decoded, config=model.config)(*t["inputs"])
    torch.testing.assert_close(y, exact, atol=1e-5, rtol=1e-5)


def tensor_bytes(path) -> int:
    """Bytes of all tensors as stored in the file, read from its header."""
    source = open_source(path).source
    if hasattr(source, "entries"):
        return sum(e.nbytes for e in source.entries.values())
    return sum(t.nbytes for t in source.header.tensors.values())


@pytest.mark.parametrize("to", sorted(FORMATS))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_weights_stay_in_their_stored_format(tiny, name, to):
    path = tiny[name]["files"][to]
    model = load_dit(path)
    original = tiny[name]["original"]
    for key, p in model.state_dict().items():
        if original[key].ndim >= 2 and isinstance(STORED[to], torch.dtype):
            assert p.dtype == STORED[to], key
        elif original[key].ndim >= 2:
            assert isinstance(p, QuantizedTensor) and p.qtype == STORED[to], key
            assert p.logical_shape == original[key].shape, key
        else:
            assert type(p) is torch.Tensor and p.dtype == torch.float32, key
    model_bytes = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    fp32_bytes = sum(w.numel() * 4 for w in tiny[name]["original"].values())
    size = path.stat().st_size
    print(f"{name} {to}: model {model_bytes} B = {model_bytes / fp32_bytes:.3f} x fp32, file {size} B")
    assert model_bytes == tensor_bytes(path) <= size


def test_mixed_fp8_file_keeps_each_block_as_stored(tiny, tmp_path):
    """Like the published 7B `..._fp8_e4m3fn_mixed_block35_fp16`: the last block kept in fp16."""
    t = tiny["dit_tiny_7b"]
    fp8 = load_file(str(t["files"]["fp8_e4m3fn"]))
    mixed = {k: (t["original"][k].half() if k.startswith("blocks.3.") and v.ndim >= 2 else v) for k, v in fp8.items()}
    path = tmp_path / "mixed_block3_fp16.safetensors"
    write_safetensors(path, {k: (v.dtype, tuple(v.shape)) for k, v in mixed.items()}, mixed.__getitem__)
    model = load_dit(path)
    for key, p in model.state_dict().items():
        if p.ndim >= 2:
            assert p.dtype == (torch.float32 if key.startswith("blocks.3.") else torch.float8_e4m3fn), key
    y = model(*t["inputs"])
    exact = load_dit({k: v.float() for k, v in mixed.items()}, config=model.config)(*t["inputs"])
    torch.testing.assert_close(y, exact, atol=1e-5, rtol=1e-5)
    assert relative(y, t["y0"]) < relative(load_dit(t["files"]["fp8_e4m3fn"])(*t["inputs"]), t["y0"])
