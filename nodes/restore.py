"""Encode / Restore / Decode (the modular path) and Upscale (the common case in one node).

Each function only turns widget values into core arguments and calls one function of
`seedvr2_core.runs`; the modular path gives exactly the frames of Upscale for the same settings.
"""

from __future__ import annotations

from ..seedvr2_core import runs
from ..seedvr2_core.color import COLOR_METHODS
from ..seedvr2_core.pipeline import OFFICIAL_SEED, RestoreOptions
from ..seedvr2_core.sizing import FITS, SizeRequest
from .spec import INT_LIMIT, NodeSpec, Socket, Widget


def size_request(resolution: int, max_resolution: int, fit: str = "pad") -> SizeRequest:
    """Widgets -> SizeRequest: the short side becomes `resolution` (0: the input size), the long side is
    capped at `max_resolution` (0: no cap)."""
    return SizeRequest(short_side=resolution or None, long_side_max=max_resolution or None, fit=fit)


def upscale(image, dit, vae, resolution: int, max_resolution: int, seed: int, batch_size: int, overlap: int,
            color_fix: str) -> tuple:
    """Widgets -> (IMAGE,)."""
    options = RestoreOptions(size_request(resolution, max_resolution), batch_size, overlap, color_fix, seed)
    return (runs.upscale_images(image, dit, vae, options),)


def encode(vae, image, resolution: int, max_resolution: int, fit: str, batch_size: int, overlap: int) -> tuple:
    """Widgets -> (ClipLatent,)."""
    return (runs.encode_images(image, vae, size_request(resolution, max_resolution, fit), batch_size, overlap),)


def restore(dit, latent, seed: int) -> tuple:
    """Widgets -> (ClipLatent,)."""
    return (runs.restore_latent(latent, dit, seed),)


def decode(vae, latent, color_fix: str) -> tuple:
    """Widgets -> (IMAGE,)."""
    return (runs.decode_latent(latent, vae, color_fix),)


IMAGE_IN = Socket("image", "IMAGE", "One image or the frames of a video (RGB or RGBA; any size, any count).")
DIT_IN = Socket("dit", "SEEDVR2_DIT", "From SeedVR2 Load DiT.")
VAE_IN = Socket("vae", "SEEDVR2_VAE", "From SeedVR2 Load VAE.")
RESOLUTION = Widget("resolution", "INT", 1080, min=0, max=16384,
                    tooltip="Short side of the output in pixels (1080 turns 640x360 into 1920x1080); 0 keeps the "
                            "input size (restoration without upscaling). Any size works, not only multiples of 16.")
MAX_RESOLUTION = Widget("max_resolution", "INT", 0, min=0, max=16384,
                        tooltip="Upper limit of the long side in pixels (the aspect is kept); 0: no limit.")
SEED = Widget("seed", "INT", OFFICIAL_SEED, min=0, max=INT_LIMIT, control_after_generate=True,
              tooltip="Noise seed. 666 is the official one; the same seed gives the same output.")
BATCH_SIZE = Widget("batch_size", "INT", 21, min=1, max=1024, step=1,
                    tooltip="Frames restored together; 4n+1 (5, 9, ..., 21, ...) avoids padding. More frames: "
                            "steadier video, more memory. 1 for single images.")
OVERLAP = Widget("overlap", "INT", 2, min=0, max=64, step=1,
                 tooltip="Frames shared by consecutive batches and cross-faded (must be below batch_size).")
COLOR_FIX = Widget("color_fix", "COMBO", "wavelet", options=tuple(COLOR_METHODS),
                   tooltip="Colour correction against the input: wavelet (official), adain, lab, hsv or none.")

UPSCALE = NodeSpec(
    "SeedVR2Upscale", "SeedVR2 Upscale",
    "Restore and upscale images or video frames with SeedVR2 in one step. Frames stream through in batches; "
    "an alpha channel is resized and kept.",
    (IMAGE_IN, DIT_IN, VAE_IN, RESOLUTION, MAX_RESOLUTION, SEED, BATCH_SIZE, OVERLAP, COLOR_FIX),
    (Socket("image", "IMAGE"),),
    upscale,
)

ENCODE = NodeSpec(
    "SeedVR2Encode", "SeedVR2 Encode",
    "Resize the frames to the requested size, cut them into temporal batches and encode each with the VAE.",
    (VAE_IN, IMAGE_IN, RESOLUTION, MAX_RESOLUTION,
     Widget("fit", "COMBO", "pad", options=FITS,
            tooltip="pad: exact size, padded internally to multiples of 16 and cropped back. crop: the official "
                    "centre crop to multiples of 16."),
     BATCH_SIZE, OVERLAP),
    (Socket("latent", "SEEDVR2_LATENT"),),
    encode,
)

RESTORE = NodeSpec(
    "SeedVR2Restore", "SeedVR2 Restore",
    "The one-step SeedVR2 restoration of every batch of an encoded latent.",
    (DIT_IN, Socket("latent", "SEEDVR2_LATENT", "From SeedVR2 Encode."), SEED),
    (Socket("latent", "SEEDVR2_LATENT"),),
    restore,
)

DECODE = NodeSpec(
    "SeedVR2Decode", "SeedVR2 Decode",
    "Decode restored latents to frames, correct their colours against the input, cross-fade the batch "
    "overlaps and crop to the requested size.",
    (VAE_IN, Socket("latent", "SEEDVR2_LATENT", "From SeedVR2 Restore."), COLOR_FIX),
    (Socket("image", "IMAGE"),),
    decode,
)
