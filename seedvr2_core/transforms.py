"""Frames to model tensors and back, following a SizePlan (seedvr2_core.sizing).

Official preprocessing (FACTS.md section 6 steps 1-6, official `projects/inference_seedvr2_*.py`):
uint8 / 255 -> resize with `F.interpolate(mode="bicubic", align_corners=False, antialias=True)` (what
the official torchvision resize runs on tensors; the non-antialiased bicubic is a different kernel) ->
clamp to [0, 1] -> centre crop -> (x - 0.5) / 0.5 -> (C, T, H, W) -> pad to 4n+1 frames by repeating the
last frame. Output (step 16): round((clip(x, -1, 1) * 0.5 + 0.5) * 255) as uint8 (T, H, W, C).

Our additions: fit "pad" pads the kept frame at the bottom/right to multiples of 16 by reflection and
`crop_back` removes it again. Reflection continues the picture's own texture and gradients across the
seam, so the model sees neither a step (black padding: a hard edge the VAE and DiT answer with ringing
and dark fringes near the border) nor a flat smear (replicate padding: a zero-gradient band that invites
streaks); bottom/right keeps the top-left origin fixed so cropping back is a plain slice. The padding is
at most 15 px and every side is at least 16 px, so reflection (which needs pad < side) always applies.

Every function works on any number of frames independently, so a streaming pipeline calls them per batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from .errors import InputError
from .sizing import SizePlan, padded_frame_count

LAYOUTS = ("auto", "thwc", "tchw")
RANGE_SLACK = 0.5  # accepted beyond [0, 1] and clamped: resampling, sharpening and colour nodes overshoot
CHECK_FRAMES = 16  # frames whose values are checked at once (bounds the temporary memory)


def _layout_of(frames: torch.Tensor, layout: str) -> str:
    if layout not in LAYOUTS:
        raise InputError(f"frame layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if frames.ndim != 4:
        raise InputError(f"frames must be 4-D, (T, H, W, 3) or (T, 3, H, W); got shape {tuple(frames.shape)}")
    if layout != "auto":
        channels = frames.shape[3] if layout == "thwc" else frames.shape[1]
        if channels != 3:
            raise InputError(f"frames {tuple(frames.shape)} in layout {layout} have {channels} channels, need 3 (RGB)")
        return layout
    last, second = frames.shape[3] == 3, frames.shape[1] == 3
    if last and second:
        raise InputError(f"frames {tuple(frames.shape)} could be (T, H, W, 3) or (T, 3, H, W): pass layout= explicitly")
    if not (last or second):
        raise InputError(
            f"frames {tuple(frames.shape)} have no RGB axis of size 3: expected (T, H, W, 3) or (T, 3, H, W)"
        )
    return "thwc" if last else "tchw"


def check_values(images: torch.Tensor, what: str = "frames") -> None:
    """Float frames (T, ...) -> None, or InputError for NaN / infinite values (naming the first such frame) or
    values far outside [0, 1].

    NaN or infinity in one pixel would spread over the whole batch (attention mixes every token). Values
    slightly outside [0, 1] (the overshoot resampling leaves) are clamped later, as the official
    preprocessing does; values far outside are a scale mistake (0-255 or 0-65535 floats, [-1, 1], HDR)
    that clamping would turn into a white or black picture.
    """
    low, high = math.inf, -math.inf
    for start in range(0, len(images), CHECK_FRAMES):
        chunk = images[start: start + CHECK_FRAMES].detach()
        lo, hi = (float(v) for v in torch.aminmax(chunk))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            bad = ~torch.isfinite(chunk)
            frame = start + int(bad.flatten(1).any(1).nonzero()[0])
            count = int(bad[frame - start].sum())
            raise InputError(
                f"{what}: frame {frame} holds {count} NaN or infinite values; they would spread over the whole "
                "batch. Fix or replace that frame (check the node that made it)"
            )
        low, high = min(low, lo), max(high, hi)
    if low < -RANGE_SLACK or high > 1 + RANGE_SLACK:
        if high <= 1 + RANGE_SLACK:
            hint = "[-1, 1] values map to it with (x + 1) / 2"
        elif high <= 16:
            hint = "HDR or over-bright pictures: tone-map or clamp them first"
        elif high <= 255 + RANGE_SLACK:
            hint = "0-255 values: divide them by 255"
        else:
            hint = "16-bit values: divide them by 65535"
        raise InputError(
            f"{what} values range from {low:.4g} to {high:.4g}; IMAGE values must lie in [0, 1] ({hint})"
        )



def frames_to_unit(frames: torch.Tensor, layout: str = "auto") -> torch.Tensor:
    """Frames uint8 [0, 255] or float [0, 1], (T, H, W, 3) or (T, 3, H, W) -> float32 (T, 3, H, W) in [0, 1]."""
    if frames.dtype == torch.uint8:
        unit = frames.to(torch.float32).div_(255.0)
    elif frames.is_floating_point():
        check_values(frames)
        unit = frames.to(torch.float32)
    else:
        raise InputError(f"frames of dtype {frames.dtype}: give uint8 (0-255) or float (0-1) frames")
    if _layout_of(frames, layout) == "thwc":
        unit = rearrange(unit, "t h w c -> t c h w")
    return unit


def resize_frames(frames: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """(T, C, H, W) float -> (T, C, h, w): antialiased bicubic (the official resize); same size is a no-op."""
    if tuple(frames.shape[-2:]) == tuple(size_hw):
        return frames  # torchvision's resize returns the image untouched when the size already matches
    return F.interpolate(frames, size=tuple(size_hw), mode="bicubic", align_corners=False, antialias=True)


def pad_to_model(frames: torch.Tensor, plan: SizePlan) -> torch.Tensor:
    """(..., h, w) at plan.crop_box size -> (..., *plan.padded_hw), reflected at the bottom/right."""
    if tuple(frames.shape[-2:]) != plan.crop_box.hw:
        raise InputError(
            f"frames of size {tuple(frames.shape[-2:])} differ from the plan's kept size {plan.crop_box.hw}"
        )
    bottom, right = plan.pad_bottom_right
    if bottom == 0 and right == 0:
        return frames
    flat = frames.reshape(-1, *frames.shape[-2:])  # reflect padding takes (N, H, W)
    return F.pad(flat, (0, right, 0, bottom), mode="reflect").reshape(*frames.shape[:-2], *plan.padded_hw)


def crop_back(frames: torch.Tensor, plan: SizePlan) -> torch.Tensor:
    """(..., *plan.padded_hw) -> (..., *plan.output_hw), a view without the padding."""
    if tuple(frames.shape[-2:]) != plan.padded_hw:
        raise InputError(
            f"frames of size {tuple(frames.shape[-2:])} differ from the plan's model size {plan.padded_hw}"
        )
    rows, cols = plan.output_box.slices()
    return frames[..., rows, cols]


def frames_to_model(
    frames: torch.Tensor, plan: SizePlan, layout: str = "auto", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Frames (T, H, W, 3) / (T, 3, H, W), uint8 or float [0, 1] -> model input (3, T, *plan.padded_hw) in [-1, 1]."""
    unit = frames_to_unit(frames, layout)
    if tuple(unit.shape[-2:]) != plan.input_hw:
        raise InputError(
            f"frames of size {tuple(unit.shape[-2:])} (h, w) differ from the plan made for {plan.input_hw}"
        )
    # Out-of-place clamp: `unit` may be the caller's own float32 tensor when no resize is needed.
    resized = resize_frames(unit, plan.resized_hw).clamp(0.0, 1.0)
    del unit
    rows, cols = plan.crop_box.slices()
    kept = rearrange(resized[..., rows, cols], "t c h w -> c t h w").contiguous()
    kept.sub_(0.5).div_(0.5)
    return pad_to_model(kept, plan).to(dtype)


def model_to_frames(
    video: torch.Tensor, plan: SizePlan, layout: str = "tchw", dtype: torch.dtype = torch.uint8
) -> torch.Tensor:
    """Model output (T, 3, Hp, Wp) ("tchw") or (3, T, Hp, Wp) ("cthw") in [-1, 1] -> (T, *plan.output_hw, 3).

    uint8 uses the official rounding round((clip(x, -1, 1) * 0.5 + 0.5) * 255); a float dtype gives [0, 1].
    """
    if layout not in ("tchw", "cthw") or video.ndim != 4:
        raise InputError(f"model output must be 4-D in layout 'tchw' or 'cthw', got {tuple(video.shape)} as {layout!r}")
    pattern = "t c h w -> t h w c" if layout == "tchw" else "c t h w -> t h w c"
    unit = crop_back(video, plan).to(torch.float32).clip(-1.0, 1.0).mul_(0.5).add_(0.5)
    if dtype == torch.uint8:
        unit = unit.mul_(255.0).round_()
    elif not dtype.is_floating_point:
        raise InputError(f"output dtype {dtype}: use torch.uint8 or a float dtype")
    return rearrange(unit, pattern).to(dtype, memory_format=torch.contiguous_format)


def pad_frames_4n1(video: torch.Tensor) -> torch.Tensor:
    """(C, T, H, W) -> (C, T', H, W), T' = padded_frame_count(T): the last frame repeated (official)."""
    frames = video.shape[1]
    target = padded_frame_count(frames)
    if target == frames:
        return video
    return torch.cat([video, video[:, -1:].expand(-1, target - frames, -1, -1)], dim=1)
