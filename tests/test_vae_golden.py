"""The VAE against the official code's outputs (../shared/reference/golden/vae_tiny*, float32 CPU)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from seedvr2_core import (
    InputError,
    StateDictMismatchError,
    UnsupportedCheckpointError,
    VAETiling,
    load_vae,
)
from tests.vae_helpers import TOL, golden_vae

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest

SCALE = 0.9152


@pytest.fixture(scope="module")
def vae(golden):
    return golden_vae(golden)


def _cthw(io, key):
    x = io[key]
    return x[:, None] if x.ndim == 3 else x  # a single decoded frame is stored squeezed (3, H, W)


@pytest.mark.parametrize("t", [1, 5, 9])
@pytest.mark.parametrize("chunk", [1, 2, None])
def test_encode_decode_match_official(vae, golden_io, t, chunk):
    io = golden_io("vae_tiny")
    tiling = VAETiling(chunk_size=chunk)
    x = io[f"T{t}.in.video"][None]
    latent = vae.encode(x, io[f"T{t}.enc.noise"][None], tiling=tiling)
    torch.testing.assert_close(latent[0], io[f"T{t}.enc.latent_scaled_thwc"].permute(3, 0, 1, 2), **TOL)
    mean = vae.encode(x, tiling=tiling)
    torch.testing.assert_close(mean[0] / SCALE, io[f"T{t}.enc.mean"], **TOL)
    decoded = vae.decode(io[f"T{t}.enc.latent_scaled_thwc"].permute(3, 0, 1, 2)[None], tiling=tiling)
    torch.testing.assert_close(decoded[0], _cthw(io, f"T{t}.dec.from_latent_scaled"), **TOL)
    from_mean = vae.decode(io[f"T{t}.enc.mean"][None] * SCALE, tiling=tiling)
    torch.testing.assert_close(from_mean[0], _cthw(io, f"T{t}.dec.from_mean"), **TOL)


def test_posterior_std_matches_official(vae, golden_io):
    io = golden_io("vae_tiny")
    x, noise = io["T5.in.video"][None], io["T5.enc.noise"][None]
    std = (vae.encode(x, noise) - vae.encode(x)) / SCALE / noise
    torch.testing.assert_close(std[0], io["T5.enc.std"], atol=1e-3, rtol=1e-3)


def test_pth_and_metadata_copies_load_identically(golden, golden_io, tmp_path):
    info, weights = golden("vae_tiny")
    state = load_file(str(weights))
    torch.save(state, tmp_path / "vae.pth")
    save_file(state, str(tmp_path / "vae.safetensors"), metadata={"seedvr2_config": json.dumps(info["config"])})
    io = golden_io("vae_tiny")
    x = io["T5.enc.latent_scaled_thwc"].permute(3, 0, 1, 2)[None]
    expected = _cthw(io, "T5.dec.from_latent_scaled")
    for vae in (load_vae(tmp_path / "vae.pth", config=info["config"]), load_vae(tmp_path / "vae.safetensors")):
        torch.testing.assert_close(vae.decode(x)[0], expected, **TOL)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_loads_and_stays_close(golden, golden_io, dtype):
    vae = golden_vae(golden, dtype)
    assert vae.decoder.conv_in.weight.dtype == dtype
    assert vae.decoder.conv_in.bias.dtype == torch.float32  # vectors stay float32 (weights policy)
    io = golden_io("vae_tiny")
    out = vae.decode(io["T5.enc.latent_scaled_thwc"].permute(3, 0, 1, 2)[None])
    assert out.dtype == dtype
    ref = _cthw(io, "T5.dec.from_latent_scaled")
    rel = (out[0].float() - ref).norm() / ref.norm()
    assert rel < 0.05, f"{dtype} decode is {rel:.3f} (relative L2) from the float32 reference"


def test_dit_checkpoint_is_refused(golden):
    _, dit = golden("dit_tiny_3b")
    with pytest.raises(UnsupportedCheckpointError, match="SeedVR2 DiT"):
        load_vae(dit)


def test_missing_unexpected_and_misshaped_keys_are_named(golden):
    info, weights = golden("vae_tiny")
    state = load_file(str(weights))
    broken = dict(state)
    del broken["decoder.mid_block.attentions.0.to_q.bias"]
    broken["decoder.extra.weight"] = torch.zeros(1)
    broken["encoder.conv_out.bias"] = torch.zeros(5)
    with pytest.raises(StateDictMismatchError) as e:
        load_vae(broken, config=info["config"])
    for key in ("decoder.mid_block.attentions.0.to_q.bias", "decoder.extra.weight", "encoder.conv_out.bias"):
        assert key in str(e.value)
    with pytest.raises(StateDictMismatchError, match="missing"):
        load_vae(state)  # the official config does not fit the tiny weights


def test_bad_inputs_raise_input_errors(vae):
    with pytest.raises(InputError, match="4n\\+1"):
        vae.encode(torch.zeros(1, 3, 4, 16, 16))
    with pytest.raises(InputError, match="multiples of 8"):
        vae.encode(torch.zeros(1, 3, 1, 12, 16))
    with pytest.raises(InputError, match="noise"):
        vae.encode(torch.zeros(1, 3, 5, 16, 16), noise=torch.zeros(1, 16, 1, 2, 2))
    with pytest.raises(InputError, match="latent"):
        vae.decode(torch.zeros(1, 4, 1, 2, 2))
    with pytest.raises(InputError, match="tile_size"):
        VAETiling(tile_size=4)
