"""Size requests and plans: the official area mode, our modes, invariants (hypothesis) and errors."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seedvr2_core.errors import InputError
from seedvr2_core.sizing import MULTIPLE, SizeRequest, padded_frame_count, plan_size

SIDES = st.integers(min_value=16, max_value=3000)
INPUT_SIDES = st.integers(min_value=8, max_value=4000)


def _one_scale_fits(size_in, size_out, slack_in: Fraction = Fraction(0)) -> bool:
    """Some scale s maps each input side (+- slack_in) to its output side within half a pixel."""
    half = Fraction(1, 2)
    bounds = [((o - half) / (i + slack_in), (o + half) / max(i - slack_in, half)) for i, o in zip(size_in, size_out)]
    return max(b[0] for b in bounds) <= min(b[1] for b in bounds)


def test_official_plan_reproduces_the_golden_pipeline_sizes(golden):
    info, _ = golden("pipeline_tiny")
    t, c, h, w = info["shapes"]["input.video_float_tchw"][0]
    plan = plan_size(SizeRequest.official(info["res_h"], info["res_w"]), h, w)
    c_out, t_out, h_out, w_out = info["shapes"]["transform.out_cthw"][0]
    assert plan.output_hw == plan.padded_hw == plan.crop_box.hw == (h_out, w_out)
    assert plan.resized_hw[0] * plan.resized_hw[1] == info["res_h"] * info["res_w"]  # x2 exactly here
    assert padded_frame_count(t) == info["shapes"]["transform.padded_4n1_cthw"][0][1]


def test_official_default_doubles_a_640x360_video():
    # FACTS.md section 6: 640x360 at the default 1280x720 area target is upscaled x2, already a multiple of 16.
    plan = plan_size(SizeRequest.official(), 360, 640)
    assert plan.resized_hw == plan.output_hw == (720, 1280)


def test_short_side_gives_that_short_side_and_the_rounded_long_side():
    plan = plan_size(SizeRequest(short_side=500), 251, 333)
    assert plan.output_hw == (500, round(333 * 500 / 251))  # float round: an independent path
    assert plan.padded_hw == (512, 672) and plan.crop_box.hw == plan.resized_hw == plan.output_hw
    assert plan.describe() == "333x251 -> resize 663x500 -> pad 663x500 -> model 672x512 -> output 663x500"


def test_exact_size_with_another_aspect_is_refused_with_pad_and_cropped_with_crop():
    with pytest.raises(InputError, match=r"fit='crop'.*height=1080 gives 1440x1080"):
        plan_size(SizeRequest(width=1920, height=1080), 480, 640)
    plan = plan_size(SizeRequest(width=1920, height=1080, fit="crop"), 480, 640)
    assert plan.resized_hw == (1440, 1920) and plan.output_hw == (1080, 1920)
    assert plan.crop_box.top == (1440 - 1080) // 2 and plan.crop_box.left == 0


def test_exact_size_accepts_inputs_whose_own_size_was_rounded():
    # 854x480 is a rounded 16:9: 1920x1080 is the same picture, not a stretch.
    assert plan_size(SizeRequest(width=1920, height=1080), 480, 854).output_hw == (1080, 1920)


def test_long_side_cap_shrinks_both_sides():
    plan = plan_size(SizeRequest(short_side=1080, long_side_max=1280), 480, 854)
    assert plan.output_hw[1] == 1280 and plan.output_hw[0] == round(480 * 1280 / 854)
    assert plan_size(SizeRequest(long_side_max=4000), 480, 854).output_hw == (480, 854)  # cap only: unchanged


REQUESTS = st.one_of(
    st.builds(SizeRequest, short_side=SIDES, fit=st.sampled_from(["pad", "crop"])),
    st.builds(SizeRequest, short_side=SIDES, long_side_max=SIDES, fit=st.sampled_from(["pad", "crop"])),
    st.builds(SizeRequest, width=SIDES, fit=st.sampled_from(["pad", "crop"])),
    st.builds(SizeRequest, height=SIDES, fit=st.sampled_from(["pad", "crop"])),
    st.builds(SizeRequest, width=SIDES, height=SIDES, fit=st.sampled_from(["pad", "crop"])),
    st.builds(SizeRequest, scale=st.floats(0.05, 8.0), fit=st.sampled_from(["pad", "crop"])),
    st.builds(SizeRequest, area=st.integers(256, 4096 * 2160), fit=st.sampled_from(["pad", "crop"])),
)


@settings(max_examples=400, deadline=None)
@given(request=REQUESTS, h=INPUT_SIDES, w=INPUT_SIDES)
def test_every_plan_is_consistent_or_refused_with_input_error(request, h, w):
    try:
        plan = plan_size(request, h, w)
    except InputError:
        return
    exact = request.width is not None and request.height is not None
    assert plan.input_hw == (h, w)
    assert all(p % MULTIPLE == 0 and p - MULTIPLE < k <= p for p, k in zip(plan.padded_hw, plan.crop_box.hw))
    box = plan.crop_box
    assert 0 <= box.top and box.top + box.height <= plan.resized_hw[0]
    assert 0 <= box.left and box.left + box.width <= plan.resized_hw[1]
    assert plan.output_box.hw == box.hw and (plan.output_box.top, plan.output_box.left) == (0, 0)
    assert min(plan.output_hw) >= 16
    if request.fit == "pad":
        assert plan.output_hw == plan.resized_hw  # every input pixel kept
    elif exact:
        assert plan.output_hw == (request.height, request.width)
        assert min(r - o for r, o in zip(plan.resized_hw, plan.output_hw)) == 0  # covers, touching one side
    else:
        assert plan.output_hw == tuple(s - s % MULTIPLE for s in plan.resized_hw)
    if request.width is not None:
        assert plan.resized_hw[1] == request.width or exact and request.fit == "crop"
    if request.height is not None:
        assert plan.resized_hw[0] == request.height or exact and request.fit == "crop"
    capped = request.long_side_max is not None and max(plan.resized_hw) == request.long_side_max
    if request.short_side is not None and not capped:
        assert min(plan.resized_hw) == request.short_side
    if request.long_side_max is not None:
        assert max(plan.resized_hw) <= request.long_side_max
    # The aspect ratio never changes beyond pixel rounding: of the output sizes, and for exact width x
    # height with fit "pad" also of the input's own size.
    assert _one_scale_fits((h, w), plan.resized_hw, Fraction(1, 2) if exact and request.fit == "pad" else Fraction(0))


@settings(max_examples=200, deadline=None)
@given(short=SIDES, h=INPUT_SIDES, w=INPUT_SIDES)
def test_crop_fit_keeps_a_centred_box_of_the_same_resize(short, h, w):
    try:
        padded = plan_size(SizeRequest(short_side=short), h, w)
    except InputError:
        return
    cropped = plan_size(SizeRequest(short_side=short, fit="crop"), h, w)
    assert cropped.resized_hw == padded.resized_hw
    offsets = (cropped.crop_box.top, cropped.crop_box.left)
    for offset, outer, inner in zip(offsets, cropped.resized_hw, cropped.crop_box.hw):
        assert abs(2 * offset - (outer - inner)) <= 1  # centred, odd leftovers split by rounding


@pytest.mark.parametrize("side,offset", [(51, 2), (53, 2), (55, 4), (57, 4), (50, 1)])
def test_crop_offsets_round_half_to_even_like_the_official_centre_crop(side, offset):
    # FACTS.md section 6 step 4: offset int(round(diff / 2)) with Python's round: 1.5 -> 2, 2.5 -> 2, 3.5 -> 4.
    plan = plan_size(SizeRequest(fit="crop"), side, side + 16)
    assert (plan.crop_box.top, plan.crop_box.left) == (offset, offset)


def _official_4n1(t: int) -> int:
    # The official cut_videos, restated: images stay, <= 4 frames pad to 5, else to the next 4n+1.
    if t == 1:
        return 1
    if t <= 4:
        return 5
    return t if (t - 1) % 4 == 0 else t + 4 - (t - 1) % 4


@pytest.mark.parametrize("t", range(1, 40))
def test_frame_padding_count_matches_the_official_rule(t):
    assert padded_frame_count(t) == _official_4n1(t)


@pytest.mark.parametrize(
    "fields,match",
    [
        (dict(short_side=0), "short_side=0"),
        (dict(short_side=-5), "short_side=-5"),
        (dict(short_side=8), "short_side=8"),
        (dict(width=20000), "width=20000"),
        (dict(height=True), "height=True"),
        (dict(width=640.5), "width=640.5"),
        (dict(long_side_max=4), "long_side_max=4"),
        (dict(scale=0), "scale=0"),
        (dict(scale=-2.0), "scale=-2.0"),
        (dict(scale=math.nan), "scale=nan"),
        (dict(scale=math.inf), "scale=inf"),
        (dict(scale="2"), "scale='2'"),
        (dict(area=100), "area=100"),
        (dict(fit="stretch"), "fit='stretch'.*pad, crop"),
        (dict(short_side=720, scale=2.0), "short_side and scale"),
        (dict(width=1280, area=921600), "width and area"),
        (dict(width=1280, long_side_max=1000), "long_side_max=1000 cannot be combined with width"),
        (dict(area=921600, long_side_max=1000), "cannot be combined with area"),
    ],
)
def test_invalid_requests_name_the_value(fields, match):
    with pytest.raises(InputError, match=match):
        SizeRequest(**fields)


def test_results_outside_the_limits_name_the_request_and_sizes():
    with pytest.raises(InputError, match=r"scale=0\.01.*333x251 into 3x3"):
        plan_size(SizeRequest(scale=0.01), 251, 333)
    with pytest.raises(InputError, match=r"short_side=4000.*50000x"):
        plan_size(SizeRequest(short_side=4000), 100, 1250)
    with pytest.raises(InputError, match="input height=0"):
        plan_size(SizeRequest(), 0, 10)
    with pytest.raises(InputError, match=r"res_w=0"):
        SizeRequest.official(720, 0)
