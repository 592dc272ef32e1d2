"""Colour correction: official goldens (wavelet, AdaIN) and properties of our lab / hsv designs."""

from __future__ import annotations

import math

import pytest
import torch
from kornia.color import hsv_to_rgb, rgb_to_hsv, rgb_to_lab
from safetensors.torch import load_file

from seedvr2_core.color import COLOR_METHODS, color_fix, wavelet_decompose
from seedvr2_core.errors import InputError

GOLDEN_CASES = ["frames_40x64", "small_20x28"]  # small_20x28: padding wider than the frame
TOL = dict(atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def golden_color(golden):
    return load_file(str(golden("color_fix")[1]))


def _frames(seed: int, n: int = 2, h: int = 24, w: int = 32, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, h // 4, w // 4, generator=gen)
    smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear")
    detail = torch.rand(n, 3, h, w, generator=gen)
    return low + (high - low) * (0.7 * smooth + 0.3 * detail)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(-1, 1) + 1) / 2


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_wavelet_matches_official(golden_color, case):
    content, style = golden_color[f"{case}.content"], golden_color[f"{case}.style"]
    expected = golden_color[f"{case}.official.wavelet_reconstruction"]
    torch.testing.assert_close(color_fix(content, style), expected, **TOL)
    high, low = wavelet_decompose(content)
    torch.testing.assert_close(high, golden_color[f"{case}.official.wavelet_decomposition.content.high"], **TOL)
    torch.testing.assert_close(low, golden_color[f"{case}.official.wavelet_decomposition.content.low"], **TOL)


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_adain_matches_official(golden_color, case):
    content, style = golden_color[f"{case}.content"], golden_color[f"{case}.style"]
    expected = golden_color[f"{case}.official.adaptive_instance_normalization"]
    torch.testing.assert_close(color_fix(content, style, "adain"), expected, **TOL)


@pytest.mark.parametrize("method", COLOR_METHODS)
def test_frames_are_independent_so_chunking_changes_nothing(golden_color, method):
    content, style = golden_color["frames_40x64.content"], golden_color["frames_40x64.style"]
    whole = color_fix(content, style, method)
    one_at_a_time = color_fix(content, style, method, chunk_pixels=1)
    torch.testing.assert_close(one_at_a_time, whole, atol=1e-6, rtol=0)
    single = color_fix(content[1:], style[1:], method)
    torch.testing.assert_close(whole[1:], single, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["wavelet", "adain", "lab", "hsv"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_in_float32_out_in_content_dtype(golden_color, method, dtype):
    content, style = golden_color["small_20x28.content"], golden_color["small_20x28.style"]
    expected = color_fix(content.to(dtype).float(), style.to(dtype).float(), method)
    got = color_fix(content.to(dtype), style.to(dtype), method)
    assert got.dtype == dtype and got.shape == content.shape
    # Only the final cast rounds: the error is half an ulp of the output dtype (absolute near zero).
    torch.testing.assert_close(got.float(), expected, atol=1e-6, rtol=2 ** -(8 if dtype == torch.bfloat16 else 11))


@pytest.mark.parametrize("method", COLOR_METHODS)
def test_in_place_equals_out_of_place(golden_color, method):
    content, style = golden_color["frames_40x64.content"], golden_color["frames_40x64.style"]
    expected = color_fix(content, style, method)
    target = content.clone()
    assert color_fix(target, style, method, out=target, chunk_pixels=40 * 64) is target
    torch.testing.assert_close(target, expected, atol=0, rtol=0)


def test_none_returns_content_unchanged():
    content = _frames(0, low=-1.3, high=1.3)
    assert color_fix(content, _frames(1), "none") is content


@pytest.mark.parametrize("method,tol", [("wavelet", 1e-6), ("adain", 1e-5), ("lab", 1e-5), ("hsv", 1e-5)])
def test_reference_equal_to_content_gives_content(method, tol):
    content = _frames(2)
    torch.testing.assert_close(color_fix(content, content.clone(), method), content, atol=tol, rtol=0)


@pytest.mark.parametrize("method", ["lab", "hsv"])
def test_our_methods_keep_shape_and_range_for_out_of_range_content(method):
    content, reference = _frames(3, low=-1.4, high=1.4), _frames(4, low=-0.2, high=0.9)
    out = color_fix(content, reference, method)
    assert out.shape == content.shape and out.dtype == content.dtype
    assert out.min() >= -1 and out.max() <= 1 and torch.isfinite(out).all()


def _lab_chroma(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lab = rgb_to_lab(_unit(x)).double()
    mean = lab[:, 1:].mean((2, 3))
    spread = (lab[:, 1:] - mean[..., None, None]).pow(2).sum(1).mean((1, 2)).sqrt()
    return lab[:, 0], mean, spread


def test_lab_moves_chroma_statistics_to_the_reference_and_keeps_lightness():
    # Mid-range colours so that no result leaves the sRGB gamut (clipping would bend the statistics).
    content = _frames(5, low=-0.35, high=0.35)
    reference = content.clone()
    reference[:, 0] += 0.12  # a warm cast
    reference[:, 2] -= 0.08
    reference = reference * 1.25  # more saturated
    out = color_fix(content, reference, "lab")
    assert out.abs().max() < 0.999  # not clipped
    light_out, mean_out, spread_out = _lab_chroma(out)
    light_c, mean_c, spread_c = _lab_chroma(content)
    _, mean_r, spread_r = _lab_chroma(reference)
    assert (mean_c - mean_r).abs().max() > 5 and (spread_c - spread_r).abs().max() > 1  # a real change
    torch.testing.assert_close(mean_out, mean_r, atol=1e-4, rtol=0)
    torch.testing.assert_close(spread_out, spread_r, atol=1e-4, rtol=0)
    torch.testing.assert_close(light_out, light_c, atol=1e-4, rtol=0)
    # A second pass finds matching statistics and changes nothing (idempotent, up to the round trip).
    torch.testing.assert_close(color_fix(out, reference, "lab"), out, atol=1e-5, rtol=0)


def test_lab_on_a_flat_frame_stays_bounded():
    content = torch.zeros(1, 3, 16, 16)  # mid grey: zero chroma spread
    out = color_fix(content, _frames(6, n=1, h=16, w=16), "lab")
    assert torch.isfinite(out).all() and out.abs().max() <= 1


def _hue_mean(x: torch.Tensor) -> torch.Tensor:
    """Saturation-weighted circular mean hue per frame, via complex numbers (independent of color.py)."""
    hsv = rgb_to_hsv(_unit(x)).double()
    return torch.angle((hsv[:, 1] * torch.exp(1j * hsv[:, 0])).mean((1, 2)))


def _with_hsv(x: torch.Tensor, hue_shift: float = 0.0, sat_gain: float = 1.0) -> torch.Tensor:
    hsv = rgb_to_hsv(_unit(x))
    hsv[:, 0] = torch.remainder(hsv[:, 0] + hue_shift, 2 * math.pi)
    hsv[:, 1] = (hsv[:, 1] * sat_gain).clamp(0, 1)
    return hsv_to_rgb(hsv) * 2 - 1


def test_hsv_keeps_value_and_neutral_pixels_for_any_reference():
    content = _frames(7, low=-1.2, high=1.2)
    content[:, :, :4] = content[:, :1, :4]  # top rows grey (r == g == b)
    out = color_fix(content, _frames(8), "hsv")
    torch.testing.assert_close(_unit(out).amax(1), _unit(content).amax(1), atol=1e-5, rtol=0)
    grey = out[:, :, :4]
    torch.testing.assert_close(grey, grey[:, :1].expand_as(grey), atol=1e-5, rtol=0)


def test_hsv_matches_the_reference_saturation():
    content = _frames(9, low=-0.6, high=0.6)
    reference = _with_hsv(content, sat_gain=0.6)
    out = color_fix(content, reference, "hsv")
    sat = lambda x: rgb_to_hsv(_unit(x))[:, 1].mean((1, 2))  # noqa: E731
    torch.testing.assert_close(sat(out), sat(reference), atol=1e-5, rtol=0)
    torch.testing.assert_close(out, reference, atol=1e-4, rtol=0)  # hue untouched: same hue mean


def test_hsv_rotates_a_dominant_hue_onto_the_reference():
    # Strongly tinted frames (one dominant hue: concentration near 1), reference rotated by 0.3 rad.
    content = _frames(10, low=-0.3, high=0.3)
    content[:, 0] += 0.5
    content[:, 2] -= 0.4
    reference = _with_hsv(content, hue_shift=0.3)
    out = color_fix(content, reference, "hsv")
    moved = torch.remainder(_hue_mean(out) - _hue_mean(content) + math.pi, 2 * math.pi) - math.pi
    assert ((moved - 0.3).abs() < 0.03).all(), moved  # rotation = angle x concentration (~0.95 here)
    assert ((_hue_mean(out) - _hue_mean(reference)).abs() < (_hue_mean(content) - _hue_mean(reference)).abs()).all()


def test_hsv_does_not_rotate_a_frame_without_a_dominant_hue():
    # Equal amounts of two opposite hues: the mean hue direction is undefined, so no rotation.
    content = torch.tensor([0.8, -0.6, -0.6]).view(1, 3, 1, 1).repeat(1, 1, 8, 8)
    content[:, :, :, 4:] = torch.tensor([-0.6, 0.8, 0.8]).view(1, 3, 1, 1)
    out = color_fix(content, _with_hsv(content, hue_shift=1.0), "hsv")
    torch.testing.assert_close(out, content, atol=1e-5, rtol=0)


def test_unknown_method_names_the_valid_ones():
    with pytest.raises(InputError, match="wavelet, adain, lab, hsv, none"):
        color_fix(_frames(0), _frames(1), "histogram")


@pytest.mark.parametrize(
    "content,reference,match",
    [
        (torch.zeros(2, 3, 8, 8), torch.zeros(1, 3, 8, 8), "differs from content"),
        (torch.zeros(2, 4, 8, 8), torch.zeros(2, 4, 8, 8), r"\(N, 3, H, W\)"),
        (torch.zeros(3, 8, 8), torch.zeros(3, 8, 8), r"\(N, 3, H, W\)"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "float frames"),
    ],
)
def test_bad_frames_raise_input_error(content, reference, match):
    with pytest.raises(InputError, match=match):
        color_fix(content, reference)
