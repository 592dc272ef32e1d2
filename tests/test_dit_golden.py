"""The DiT against outputs of the official code (../shared/reference/golden, float32 CPU)."""

from __future__ import annotations

import pytest
import torch

from seedvr2_core import load_dit
from dit_io import case_inputs, split_outputs

TOL = dict(atol=1e-4, rtol=1e-4)
CASES = [("dit_tiny_3b", "A"), ("dit_tiny_3b", "B"), ("dit_tiny_3b", "D"), ("dit_tiny_7b", "AB"), ("dit_tiny_7b", "D")]


@pytest.fixture(scope="module")
def tiny_models(golden):
    models = {}
    for name in ("dit_tiny_3b", "dit_tiny_7b"):
        info, weights = golden(name)
        models[name] = load_dit(weights, config=info["config_overrides_vs_official"])
    return models


@pytest.mark.parametrize("name,case", CASES)
def test_tiny_outputs_match_official(tiny_models, golden_io, name, case):
    io = golden_io(name)
    vid, txt, vid_shape, txt_shape, timestep, shapes = case_inputs(io, case)
    out = tiny_models[name](vid, txt, vid_shape, txt_shape, timestep)
    for i, got in enumerate(split_outputs(out, shapes)):
        torch.testing.assert_close(got, io[f"{case}.out.vid.{i}"], **TOL)


@pytest.mark.parametrize("name", ["dit_tiny_3b", "dit_tiny_7b"])
def test_bf16_attention_emulation_matches_official(tiny_models, golden_io, name):
    io = golden_io(name)
    model = tiny_models[name]
    vid, txt, vid_shape, txt_shape, timestep, shapes = case_inputs(io, "D")
    model.emulate_bf16_attention = True
    try:
        out = model(vid, txt, vid_shape, txt_shape, timestep)
    finally:
        model.emulate_bf16_attention = False
    torch.testing.assert_close(split_outputs(out, shapes)[0], io["D_bf16attn.out.vid.0"], atol=1e-3, rtol=1e-3)


def test_3b_intermediates_match_official(tiny_models, golden_io):
    """Every block's video and text output, the embeddings and the output norm+modulation of case D."""
    io = golden_io("dit_tiny_3b")
    model = tiny_models["dit_tiny_3b"]
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        model.vid_in.proj.register_forward_hook(lambda m, a, out: seen.__setitem__("vid_in", out)),
        model.txt_in.register_forward_hook(lambda m, a, out: seen.__setitem__("txt_in", out)),
        model.emb_in.register_forward_hook(lambda m, a, out: seen.__setitem__("emb_in", out)),
        model.vid_out.proj.register_forward_pre_hook(lambda m, a: seen.__setitem__("vid_out_norm_ada", a[0])),
    ]
    vid, txt, vid_shape, txt_shape, timestep, _ = case_inputs(io, "D")
    n_vid = len(vid) // 4  # video tokens after the 1x2x2 patch; blocks carry [video ; text] packed
    for i, block in enumerate(model.blocks):
        def keep(m, a, out, i=i):
            seen[f"block{i}.vid"], seen[f"block{i}.txt"] = out[:n_vid], out[n_vid:]
        hooks.append(block.register_forward_hook(keep))
    try:
        model(vid, txt, vid_shape, txt_shape, timestep)
    finally:
        for h in hooks:
            h.remove()
    names = [k.removeprefix("D.intermediate.") for k in io if k.startswith("D.intermediate.")]
    assert len(names) == 12
    for name in names:
        torch.testing.assert_close(seen[name], io[f"D.intermediate.{name}"], **TOL, msg=lambda m: f"{name}: {m}")


def test_loads_from_pth_copy_identically(golden, golden_io, tmp_path):
    """The same weights saved as a .pth state dict load through the same path and give the same outputs."""
    from safetensors.torch import load_file

    info, weights = golden("dit_tiny_3b")
    pth = tmp_path / "seedvr2_tiny.pth"
    torch.save(load_file(str(weights)), pth)
    model = load_dit(pth, config=info["config_overrides_vs_official"])
    io = golden_io("dit_tiny_3b")
    vid, txt, vid_shape, txt_shape, timestep, shapes = case_inputs(io, "A")
    out = model(vid, txt, vid_shape, txt_shape, timestep)
    torch.testing.assert_close(split_outputs(out, shapes)[0], io["A.out.vid.0"], **TOL)


def test_two_sample_3b_batch_equals_single_runs(tiny_models, golden_io):
    """The official 3B is wrong for batch > 1 (FACTS 8.2); ours matches two single-sample runs."""
    io = golden_io("dit_tiny_3b")
    model = tiny_models["dit_tiny_3b"]
    a = case_inputs(io, "A")
    b = case_inputs(io, "B")
    single = [model(*x[:5]) for x in (a, b)]
    batched = model(
        torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]]), torch.cat([a[2], b[2]]),
        torch.cat([a[3], b[3]]), torch.cat([a[4], b[4]]),
    )
    torch.testing.assert_close(batched, torch.cat(single), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name,case", [("dit_tiny_3b", "A"), ("dit_tiny_7b", "AB")])
@pytest.mark.parametrize("dtype,bound", [(torch.bfloat16, 2e-2), (torch.float16, 3e-3)])
def test_half_precision_compute_stays_near_float32(golden, golden_io, name, case, dtype, bound):
    """16-bit compute: relative RMS error against the float32 official output stays at the level of a
    few roundings of the format (unit roundoff: bf16 2^-9 ~ 2e-3, fp16 2^-12 ~ 2.4e-4), measured
    8e-3 / 1e-3 here."""
    info, weights = golden(name)
    model = load_dit(weights, config=info["config_overrides_vs_official"], dtype=dtype)
    io = golden_io(name)
    vid, txt, vid_shape, txt_shape, timestep, shapes = case_inputs(io, case)
    out = model(vid, txt, vid_shape, txt_shape, timestep)
    assert out.dtype == torch.float32  # returned in the input's dtype
    expected = torch.cat([io[f"{case}.out.vid.{i}"].reshape(-1, 16) for i in range(len(shapes))])
    assert (out - expected).norm() / expected.norm() < bound
