"""Frames to model tensors and back: the official preprocessing goldens, padding round trips, errors."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from seedvr2_core.errors import InputError
from seedvr2_core.sizing import SizeRequest, plan_size
from seedvr2_core.transforms import (
    crop_back,
    frames_to_model,
    frames_to_unit,
    model_to_frames,
    pad_frames_4n1,
    pad_to_model,
)

TOL = dict(atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def pipeline(golden):
    info, path = golden("pipeline_tiny")
    return info, load_file(str(path))


@pytest.fixture(scope="module")
def official_plan(pipeline):
    info, tensors = pipeline
    return plan_size(SizeRequest.official(info["res_h"], info["res_w"]), *tensors["input.video_float_tchw"].shape[-2:])


def test_official_preprocessing_matches_the_golden(pipeline, official_plan):
    _, g = pipeline
    expected = g["transform.out_cthw"]
    from_float = frames_to_model(g["input.video_float_tchw"], official_plan, layout="tchw")
    torch.testing.assert_close(from_float, expected, **TOL)
    # The same from the uint8 frames, in both layouts (what a video reader or ComfyUI hands over).
    u8 = g["input.frames_uint8_tchw"]
    torch.testing.assert_close(frames_to_model(u8, official_plan), expected, **TOL)
    torch.testing.assert_close(frames_to_model(rearrange(u8, "t c h w -> t h w c"), official_plan), expected, **TOL)


def test_official_frame_padding_matches_the_golden(pipeline):
    _, g = pipeline
    torch.testing.assert_close(pad_frames_4n1(g["transform.out_cthw"]), g["transform.padded_4n1_cthw"], atol=0, rtol=0)


@pytest.mark.parametrize("frames,expected", [(1, 1), (2, 5), (4, 5), (5, 5), (6, 9), (10, 13)])
def test_frame_padding_repeats_the_last_frame(frames, expected):
    video = torch.arange(frames, dtype=torch.float32).view(1, frames, 1, 1).expand(3, frames, 2, 2)
    padded = pad_frames_4n1(video)
    assert padded.shape == (3, expected, 2, 2)
    assert torch.equal(padded[:, :frames], video)
    assert (padded[:, frames:] == frames - 1).all()


def test_official_uint8_output_matches_the_golden(pipeline, official_plan):
    _, g = pipeline
    got = model_to_frames(g["output.colorfix_tchw"], official_plan)
    expected = g["output.final_uint8_thwc"]
    assert got.dtype == torch.uint8 and got.shape == expected.shape and got.is_contiguous()
    diff = (got.int() - expected.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3
    cthw = rearrange(g["output.colorfix_tchw"], "t c h w -> c t h w")
    from_cthw = model_to_frames(cthw, official_plan, layout="cthw")
    assert torch.equal(from_cthw, got)


def test_float_output_is_the_unrounded_uint8_value(pipeline, official_plan):
    _, g = pipeline
    as_float = model_to_frames(g["output.colorfix_tchw"], official_plan, dtype=torch.float32)
    as_uint8 = model_to_frames(g["output.colorfix_tchw"], official_plan)
    assert as_float.min() >= 0 and as_float.max() <= 1
    assert ((as_float * 255 - as_uint8.float()).abs() <= 0.5 + 1e-4).all()


@settings(max_examples=60, deadline=None)
@given(h=st.integers(16, 70), w=st.integers(16, 70), frames=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_native_size_pad_fit_keeps_every_pixel_exactly(h, w, frames, seed):
    # No resize: uint8 -> model -> uint8 must give the input back bit for bit, whatever the padding.
    gen = torch.Generator().manual_seed(seed)
    u8 = torch.randint(0, 256, (frames, h, w, 3), dtype=torch.uint8, generator=gen)
    plan = plan_size(SizeRequest(), h, w)
    model = frames_to_model(u8, plan)
    assert model.shape == (3, frames, *plan.padded_hw) and all(s % 16 == 0 for s in plan.padded_hw)
    assert torch.equal(model_to_frames(model, plan, layout="cthw"), u8)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(16, 90), w=st.integers(16, 90), seed=st.integers(0, 2**16))
def test_padding_crops_back_and_adds_no_edges(h, w, seed):
    plan = plan_size(SizeRequest(), h, w)
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(seed))
    padded = pad_to_model(x, plan)
    assert padded.shape[-2:] == plan.padded_hw
    assert torch.equal(crop_back(padded, plan), x)
    # Reflection invents no values and no steps: the padded frame's value range and largest
    # neighbour-to-neighbour jump are those of the picture itself (black padding would break both).
    assert padded.min() >= x.min() and padded.max() <= x.max()
    for axis in (-1, -2):
        assert padded.diff(dim=axis).abs().max() <= x.diff(dim=axis).abs().max()


@pytest.mark.parametrize("h,w,request_", [(251, 333, SizeRequest(short_side=61)), (37, 53, SizeRequest(scale=1.7))])
def test_resized_odd_sizes_come_back_at_exactly_the_requested_size(h, w, request_):
    plan = plan_size(request_, h, w)
    frames = torch.rand(2, h, w, 3)
    model = frames_to_model(frames, plan)
    assert model.shape == (3, 2, *plan.padded_hw) and model.min() >= -1 and model.max() <= 1
    out = model_to_frames(model, plan, layout="cthw")
    assert out.shape == (2, *plan.output_hw, 3)
    assert plan.output_hw == plan.resized_hw and min(plan.output_hw) % 2 == 1  # odd sizes are fine


def test_float_frames_are_not_modified_in_place():
    frames = torch.rand(2, 3, 20, 24) * 1.4 - 0.2  # out of [0, 1]: the clamp must not touch the caller's tensor
    before = frames.clone()
    frames_to_model(frames, plan_size(SizeRequest(), 20, 24), layout="tchw")
    assert torch.equal(frames, before)


def test_frames_to_unit_scales_uint8_and_keeps_float():
    u8 = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3).expand(2, 4, 5, 3)
    unit = frames_to_unit(u8)
    assert unit.shape == (2, 3, 4, 5) and unit.dtype == torch.float32
    torch.testing.assert_close(unit[0, :, 0, 0], torch.tensor([0.0, 0.2, 1.0]))


@pytest.mark.parametrize(
    "frames,layout,match",
    [
        (torch.zeros(2, 3, 8, 3), "auto", "pass layout= explicitly"),
        (torch.zeros(2, 8, 8, 4), "auto", "no RGB axis"),
        (torch.zeros(2, 8, 8, 4), "thwc", "4 channels"),
        (torch.zeros(8, 8, 3), "auto", "4-D"),
        (torch.zeros(2, 8, 8, 3, dtype=torch.int16), "auto", "int16"),
        (torch.zeros(2, 8, 8, 3), "nhwc", "'nhwc'"),
    ],
)
def test_bad_frames_raise_input_error(frames, layout, match):
    with pytest.raises(InputError, match=match):
        frames_to_unit(frames, layout)


def test_size_mismatches_raise_input_error():
    plan = plan_size(SizeRequest(), 20, 24)
    with pytest.raises(InputError, match="plan made for"):
        frames_to_model(torch.zeros(1, 21, 24, 3), plan)
    with pytest.raises(InputError, match="model size"):
        model_to_frames(torch.zeros(1, 3, 20, 24), plan)
    with pytest.raises(InputError, match="kept size"):
        pad_to_model(torch.zeros(1, 3, 32, 32), plan)
    with pytest.raises(InputError, match="uint8 or a float"):
        model_to_frames(torch.zeros(1, 3, 32, 32), plan, dtype=torch.int32)
