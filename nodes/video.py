"""Upscale Video: VIDEO in, VIDEO out, streaming frames from the source file through the pipeline."""

from __future__ import annotations

from ..seedvr2_core import runs
from ..seedvr2_core.pipeline import RestoreOptions
from .restore import BATCH_SIZE, COLOR_FIX, DIT_IN, MAX_RESOLUTION, OVERLAP, RESOLUTION, SEED, VAE_IN, size_request
from .spec import NodeSpec, Socket


def upscale_video(video, dit, vae, resolution: int, max_resolution: int, seed: int, batch_size: int, overlap: int,
                  color_fix: str) -> tuple:
    """Widgets -> (path of the restored video,); `video` is the VIDEO's stream source (a path or a BytesIO)."""
    options = RestoreOptions(size_request(resolution, max_resolution), batch_size, overlap, color_fix, seed)
    return (str(runs.upscale_video(video, dit, vae, options)),)


UPSCALE_VIDEO = NodeSpec(
    "SeedVR2UpscaleVideo", "SeedVR2 Upscale Video",
    "Restore and upscale a video of any length: frames are read from the file, restored batch by batch and "
    "written to a new video as they finish, so memory does not grow with the length. Frame rate and audio "
    "are kept. Connect Load Video before it and Save Video after it.",
    (Socket("video", "VIDEO", "From Load Video (or any VIDEO)."), DIT_IN, VAE_IN, RESOLUTION, MAX_RESOLUTION, SEED,
     BATCH_SIZE, OVERLAP, COLOR_FIX),
    (Socket("video", "VIDEO"),),
    upscale_video,
)
