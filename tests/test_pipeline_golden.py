"""The whole official SeedVR2 inference on tiny models (golden/pipeline_tiny*), stage by stage and end to end.

The official run drew its noise from a CPU RNG in a fixed order; we inject the saved tensors through a
noise source that returns them for the streams the pipeline asks for.
"""

from __future__ import annotations

import pytest
import torch
from einops import rearrange
from safetensors.torch import load_file

from seedvr2_core import SizeRequest, load_dit, load_vae, plan_size, restore
from seedvr2_core.color import color_fix
from seedvr2_core.pipeline import decode_batch, encode_batch, sample_batch
from seedvr2_core.transforms import frames_to_model, model_to_frames, pad_frames_4n1

TOL = dict(atol=1e-4, rtol=1e-4)


class SavedNoise:
    """The golden run's posterior noise and initial noise, as the pipeline's noise source."""

    def __init__(self, io):
        self.tensors = {"posterior": rearrange(io["vae.posterior_noise"], "c t h w -> t c h w"),
                        "noise": io["noise_thwc"]}

    def draw(self, keys, shape, stream):
        saved = self.tensors[stream]
        assert tuple(saved.shape[1:]) == tuple(shape) and len(keys) == len(saved)
        return saved.clone()


@pytest.fixture(scope="module")
def official(golden):
    info, tensors = golden("pipeline_tiny")  # this golden keeps its tensors in pipeline_tiny.safetensors
    io = load_file(str(tensors))
    dit = load_dit(golden("dit_tiny_3b")[1], config=info["dit_config_overrides"])
    vae = load_vae(golden("vae_tiny")[1], config=info["vae_config_overrides"])
    plan = plan_size(SizeRequest.official(info["res_h"], info["res_w"]), 30, 45)
    return info, io, dit, vae, plan


def test_every_stage_matches_official(official):
    info, io, dit, vae, plan = official
    noise = SavedNoise(io)
    video = frames_to_model(io["input.frames_uint8_tchw"], plan, "tchw")
    torch.testing.assert_close(video, io["transform.out_cthw"], **TOL)
    padded = pad_frames_4n1(video)
    torch.testing.assert_close(padded, io["transform.padded_4n1_cthw"], **TOL)
    cond = encode_batch(vae, padded, 0, noise)
    torch.testing.assert_close(cond, io["vae.cond_latent_thwc"], **TOL)
    x0 = sample_batch(dit, io["vae.cond_latent_thwc"], 0, noise, io["text.texts_pos"])
    torch.testing.assert_close(x0.reshape(-1, 16), io["sampler.x_0"], **TOL)
    decoded = decode_batch(vae, io["vae_decode.in_latent_thwc"], 3)
    torch.testing.assert_close(decoded, io["output.sample_truncated_tchw"], **TOL)
    reference = rearrange(io["transform.out_cthw"], "c t h w -> t c h w")
    fixed = color_fix(io["output.sample_truncated_tchw"], reference, "wavelet")
    torch.testing.assert_close(fixed, io["output.colorfix_tchw"], **TOL)
    frames = model_to_frames(io["output.colorfix_tchw"], plan, "tchw")
    assert torch.equal(frames, io["output.final_uint8_thwc"])


def test_end_to_end_official_mode_matches_final_frames(official):
    info, io, dit, vae, _ = official
    frames = rearrange(io["input.frames_uint8_tchw"], "t c h w -> t h w c")
    out = restore(frames, dit, vae, io["text.texts_pos"], size=SizeRequest.official(info["res_h"], info["res_w"]),
                  batch_size=len(frames), overlap=0, noise=SavedNoise(io))
    expected = io["output.final_uint8_thwc"]
    assert out.shape == expected.shape and out.dtype == torch.uint8
    off = (out.int() - expected.int()).abs()
    assert off.max() <= 1 and (off > 0).float().mean() < 1e-3, f"max {off.max()}, share {(off > 0).float().mean()}"
