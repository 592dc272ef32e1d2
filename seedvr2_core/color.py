"""Colour correction of restored frames against the input they were restored from.

The diffusion output can drift in colour and brightness; the official pipeline corrects this by taking
the fine detail from the output and the coarse colour from the (resized) input. Methods:

* `wavelet` (default, official): StableSR's wavelet reconstruction, which the official SeedVR README
  tells users to install (FACTS.md section 7). A frame splits into five detail bands and a residual
  low-pass, made by repeated blurs with the 3x3 kernel [[1,2,1],[2,4,2],[1,2,1]]/16 dilated by
  1, 2, 4, 8, 16 after replicate padding by the same amount (padding wider than the frame replicates
  the border further, as the official code does). Output = content - low(content) + low(reference);
  no clamp. Frames smaller than 128 px are handled like any other size (unlike the older port).
* `adain` (official file, unused by the official pipeline): per frame and channel, the content is
  normalised and given the reference's mean and standard deviation (unbiased variance + 1e-5).
* `lab` (ours): in CIELAB (kornia's sRGB/D65 conversion), L* is kept from the content; the content's
  chroma (a*, b*) is shifted so its mean equals the reference's and scaled about that mean by one
  factor so its RMS spread equals the reference's. Corrects casts and saturation while leaving
  lightness, detail and the hue layout of the content alone. Spreads are floored at 0.5 (both sides
  of the ratio) so a flat frame is not amplified without bound. Out-of-gamut results are clipped.
* `hsv` (ours): in HSV (kornia), V (the largest channel) is kept from the content; saturation is
  multiplied by the ratio of mean saturations (reference / content, both floored at 0.01); hue is rotated towards the
  reference's saturation-weighted circular mean hue, by the angle between the two means times the
  smaller of the two hue concentrations (|mean chroma vector| / mean saturation, in [0, 1]) so that a
  frame without a dominant hue is not rotated. Neutral (grey) pixels stay neutral.
* `none`: the content unchanged.

`lab` and `hsv` clamp their inputs to [-1, 1] first (colour spaces are defined on displayable colours)
and return values in [-1, 1]. Every method works frame by frame, so frames are processed in chunks
(float32 scratch memory stays bounded) and long videos can be fixed in any batching.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

import torch
import torch.nn.functional as F

from .errors import InputError
from .host import check_interrupt

logger = logging.getLogger(__name__)

WAVELET_LEVELS = 5
ADAIN_EPS = 1e-5
# Chroma spreads (CIELAB units) are floored at about half a just-noticeable difference and mean
# saturations at ~2.5/255, on both sides of the gain ratio, so an almost flat or grey content frame is
# not amplified without bound while identical statistics still give a gain of exactly 1.
LAB_SPREAD_FLOOR = 0.5
HSV_SATURATION_FLOOR = 0.01
DEFAULT_CHUNK_PIXELS = 1 << 22  # ~4.2 Mpx (two 1080p frames) per chunk: 50 MB per float32 scratch copy


def _taps(x: torch.Tensor, dim: int, dilation: int) -> torch.Tensor:
    """x[i - d] + 2 x[i] + x[i + d] along `dim` (2 or 3) of replicate-padded x (padding may exceed the size)."""
    n = x.shape[dim]
    padded = F.pad(x, (0, 0, dilation, dilation) if dim == 2 else (dilation, dilation, 0, 0), mode="replicate")
    total = torch.add(padded.narrow(dim, 0, n), padded.narrow(dim, 2 * dilation, n))
    return total.add_(padded.narrow(dim, dilation, n), alpha=2.0)


def _blur(x: torch.Tensor, dilation: int) -> torch.Tensor:
    """(N, C, H, W) float -> same shape: the official replicate-padded, dilated 3x3 binomial blur.

    The kernel [[1,2,1],[2,4,2],[1,2,1]]/16 is the outer product of [1,2,1]/4 with itself and
    replicate padding is separable, so two 1-D passes give the same result. Unlike a dilated conv2d
    (whose CPU path unfolds nine shifted copies: 14x the input in scratch, see benchmarks/), they need
    two frame-sized temporaries and run about twice as fast.
    """
    return _taps(_taps(x, 2, dilation), 3, dilation).div_(16.0)


def wavelet_low(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) float -> the residual low-pass of the 5-level wavelet decomposition, same shape."""
    for level in range(WAVELET_LEVELS):
        x = _blur(x, 2**level)
    return x


def wavelet_decompose(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) float -> (high, low), high = sum of the 5 detail bands = x - low."""
    low = wavelet_low(x)
    return x - low, low


def _wavelet(content: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    # The detail bands telescope: their sum is content - low(content), so no per-band copies are kept.
    out = wavelet_low(content).neg_().add_(content)
    return out.add_(wavelet_low(reference))


def _mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x.flatten(2)
    mean = flat.mean(2)[..., None, None]
    std = (flat.var(2, unbiased=True) + ADAIN_EPS).sqrt()[..., None, None]
    return mean, std


def _adain(content: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    mean_c, std_c = _mean_std(content)
    mean_r, std_r = _mean_std(reference)
    return (content - mean_c).div_(std_c).mul_(std_r).add_(mean_r)


def _kornia_color():
    # Imported on first use: `import kornia` takes ~0.4 s (measured) and only lab / hsv need it, so
    # loading the node pack stays fast.
    import kornia.color

    return kornia.color


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-1.0, 1.0).add_(1.0).mul_(0.5)


def _from_unit(x: torch.Tensor) -> torch.Tensor:
    return x.mul_(2.0).sub_(1.0).clamp_(-1.0, 1.0)


def _chroma_stats(ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 2, H, W) a*b* -> mean (N, 2, 1, 1) and RMS distance to it (N, 1, 1, 1)."""
    mean = ab.mean((2, 3), keepdim=True)
    spread = (ab - mean).square().sum(1, keepdim=True).mean((2, 3), keepdim=True).sqrt()
    return mean, spread


def _lab(content: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    kc = _kornia_color()
    mean_r, spread_r = _chroma_stats(kc.rgb_to_lab(_to_unit(reference))[:, 1:])
    lab = kc.rgb_to_lab(_to_unit(content))
    mean_c, spread_c = _chroma_stats(lab[:, 1:])
    gain = spread_r.clamp_min(LAB_SPREAD_FLOOR) / spread_c.clamp_min(LAB_SPREAD_FLOOR)
    lab[:, 1:] = (lab[:, 1:] - mean_c).mul_(gain).add_(mean_r)
    return _from_unit(kc.lab_to_rgb(lab, clip=True))


def hue_statistics(hsv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, 3, H, W) kornia HSV -> per frame (N,): mean hue angle, hue concentration in [0, 1], mean saturation."""
    hue, sat = hsv[:, 0], hsv[:, 1]
    x = (sat * hue.cos()).mean((1, 2))
    y = (sat * hue.sin()).mean((1, 2))
    mean_sat = sat.mean((1, 2))
    concentration = torch.hypot(x, y) / mean_sat.clamp_min(1e-12)
    return torch.atan2(y, x), concentration.clamp(0.0, 1.0), mean_sat


def _hsv(content: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    kc = _kornia_color()
    angle_r, conc_r, sat_r = hue_statistics(kc.rgb_to_hsv(_to_unit(reference)))
    hsv = kc.rgb_to_hsv(_to_unit(content))
    angle_c, conc_c, sat_c = hue_statistics(hsv)
    delta = torch.atan2(torch.sin(angle_r - angle_c), torch.cos(angle_r - angle_c))  # wrapped to (-pi, pi]
    rotation = (delta * torch.minimum(conc_c, conc_r))[:, None, None]
    gain = (sat_r.clamp_min(HSV_SATURATION_FLOOR) / sat_c.clamp_min(HSV_SATURATION_FLOOR))[:, None, None]
    hsv[:, 0] = torch.remainder(hsv[:, 0] + rotation, 2 * math.pi)
    hsv[:, 1] = (hsv[:, 1] * gain).clamp_(0.0, 1.0)
    return _from_unit(kc.hsv_to_rgb(hsv))


_METHODS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "wavelet": _wavelet,
    "adain": _adain,
    "lab": _lab,
    "hsv": _hsv,
}
COLOR_METHODS = ("wavelet", "adain", "lab", "hsv", "none")


def _check_inputs(content: torch.Tensor, reference: torch.Tensor, method: str) -> None:
    if method not in COLOR_METHODS:
        raise InputError(f"unknown colour correction method {method!r}: use one of {', '.join(COLOR_METHODS)}")
    if content.ndim != 4 or content.shape[1] != 3:
        raise InputError(f"colour correction needs frames shaped (N, 3, H, W), got content {tuple(content.shape)}")
    if reference.shape != content.shape:
        raise InputError(
            f"colour reference shape {tuple(reference.shape)} differs from content {tuple(content.shape)}: "
            "pass the model input frames at the same size and frame count"
        )
    if not (content.is_floating_point() and reference.is_floating_point()):
        raise InputError(f"colour correction needs float frames in [-1, 1], got {content.dtype} and {reference.dtype}")
    if content.device != reference.device:
        raise InputError(f"content is on {content.device} but the colour reference is on {reference.device}")


def color_fix(
    content: torch.Tensor,
    reference: torch.Tensor,
    method: str = "wavelet",
    *,
    out: torch.Tensor | None = None,
    chunk_pixels: int = DEFAULT_CHUNK_PIXELS,
) -> torch.Tensor:
    """content, reference (N, 3, H, W) float in [-1, 1] -> corrected content, (N, 3, H, W) in content's dtype.

    Computed in float32, `chunk_pixels` pixels (whole frames, at least one) at a time. `out` may be
    `content` itself to correct in place.
    """
    _check_inputs(content, reference, method)
    if method == "none":
        return content if out is None else out.copy_(content)
    if out is None:
        out = torch.empty_like(content)
    elif out.shape != content.shape or out.device != content.device:
        raise InputError(
            f"out {tuple(out.shape)} on {out.device} must match content {tuple(content.shape)} on {content.device}"
        )
    fix = _METHODS[method]
    frames = content.shape[0]
    step = max(1, chunk_pixels // max(1, content.shape[2] * content.shape[3]))
    for start in range(0, frames, step):
        check_interrupt()
        part = slice(start, min(start + step, frames))
        # The methods never write to their inputs, so float32 inputs are used without a copy.
        fixed = fix(content[part].to(torch.float32), reference[part].to(torch.float32))
        out[part] = fixed.to(out.dtype)
    logger.debug("colour fix %s on %d frames in chunks of %d", method, frames, step)
    return out
