"""IMAGE batches as ComfyUI passes them, and their alpha channel.

An IMAGE is a float tensor (B, H, W, C) in [0, 1]: B images or the B frames of a video, C = 3 (RGB) or
4 (RGBA, as some loaders and compositing nodes give); C = 1 (grayscale) is taken as RGB with three equal
channels. The model restores RGB only; an alpha channel is resized with the frame's own size plan (the
official antialiased bicubic resize, clamped to [0, 1], then the same crop) and attached again, so
mattes keep their place on the restored picture.

Values are checked up front (`transforms.check_values`): NaN / infinity and values far outside [0, 1]
are refused before any work starts.
"""

from __future__ import annotations

import torch

from .errors import InputError
from .sizing import SizePlan
from .transforms import check_values, resize_frames

CHANNELS = (1, 3, 4)


def check_images(images: torch.Tensor, what: str = "image") -> torch.Tensor:
    """The IMAGE tensor (B, H, W, 3|4) float, with a single (H, W, C) image given a batch axis and grayscale
    (B, H, W, 1) seen as RGB (a view); else InputError naming the problem (see the module docstring)."""
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{what}: expected an IMAGE tensor, got {type(images).__name__}")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] not in CHANNELS:
        raise InputError(
            f"{what} has shape {tuple(images.shape)}: expected (frames, height, width, 3 or 4) as ComfyUI's IMAGE "
            "(1 channel is read as grayscale)"
        )
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise InputError(f"{what} is empty (shape {tuple(images.shape)}): connect at least one frame")
    if not images.is_floating_point():
        top = 255 if images.dtype == torch.uint8 else 65535
        raise InputError(
            f"{what} has dtype {images.dtype}: IMAGE tensors are float in [0, 1] (convert with .float() / {top})"
        )
    check_values(images, what)
    return images.expand(-1, -1, -1, 3) if images.shape[-1] == 1 else images


def split_alpha(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, H, W, 3|4) -> RGB view (B, H, W, 3) and alpha view (B, H, W) or None (no copies)."""
    if images.shape[-1] == 4:
        return images[..., :3], images[..., 3]
    return images, None


def resize_alpha(alpha: torch.Tensor, plan: SizePlan) -> torch.Tensor:
    """Alpha (T, H, W) at plan.input_hw -> (T, *plan.output_hw) float32 in [0, 1], placed like the RGB output."""
    if tuple(alpha.shape[-2:]) != plan.input_hw:
        raise InputError(f"alpha of size {tuple(alpha.shape[-2:])} differs from the plan made for {plan.input_hw}")
    resized = resize_frames(alpha.to(torch.float32)[:, None], plan.resized_hw)[:, 0].clamp(0.0, 1.0)
    rows, cols = plan.crop_box.slices()
    kept = resized[:, rows, cols]
    # The model frame is the kept frame padded at the bottom/right; the output box is its top-left part.
    out_rows, out_cols = plan.output_box.slices()
    return kept[:, out_rows, out_cols].contiguous()


def attach_alpha(rgb: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
    """RGB (T, h, w, 3) and alpha (T, h, w) or None -> (T, h, w, 4), or the RGB unchanged."""
    if alpha is None:
        return rgb
    if alpha.shape != rgb.shape[:-1]:
        raise InputError(f"alpha {tuple(alpha.shape)} does not match the frames {tuple(rgb.shape)}")
    return torch.cat([rgb, alpha.to(rgb.device, rgb.dtype)[..., None]], dim=-1)
