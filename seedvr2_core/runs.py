"""One node's work from model handles to frames: place the models, show progress, honour Cancel.

Every function here is what one node does (nodes/ only translates widgets to these calls), and each runs
the same with or without ComfyUI (`host` has plain defaults). Around the pipeline they add:

* placement: the models are put on the compute device through the host (`host.load_models`), which first
  unloads other models to leave room for this run's activations; they stay there afterwards until the
  host needs the room (ComfyUI's model manager) or the handle is dropped;
* the VAE tiling of the run: the handle's, or (None, "auto") planned from the memory free after loading;
* progress in frames with a preview of the last finished frame, and cancellation between batches, VAE
  tiles and DiT blocks (`InterruptObserver`); a cancelled run leaves the models as they were.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from pathlib import Path
from typing import Iterator

import torch

from . import host
from .batching import check_batching
from .clip import ClipLatent, decode_clip, encode_clip, restore_clip
from .dit.observers import InterruptObserver, observing
from .handles import DiTHandle, VAEHandle
from .images import attach_alpha, check_images, resize_alpha, split_alpha
from .memory import dit_step_bytes
from .pipeline import RestoreOptions, restore_stream
from .progress import FrameProgress
from .sizing import SizePlan, SizeRequest, plan_size
from .vae import VAETiling
from .video_io import MediaInfo
from .video_job import Restorer, restore_video

log = logging.getLogger(__name__)

AUTO_VAE_BUDGET = 0.8  # share of the free memory an "auto" VAE tiling plans for (the rest: allocator slack)


def dit_activation_bytes(dit: DiTHandle, plan: SizePlan, batch_size: int) -> int:
    """Peak bytes of one DiT step beyond its weights (the memory plan's model: activations, attention
    scratch, the sampler's tensors) on a batch of `batch_size` frames at `plan`'s size; ComfyUI keeps this
    much free when it loads the models."""
    device = dit.placement.device
    return dit_step_bytes(dit.model.config, batch_size, *plan.padded_hw, len(dit.text), dit.placement.dtype,
                          device.type, dit.model._backend(device).varlen)


@contextlib.contextmanager
def vae_tiling(vae: VAEHandle) -> Iterator[VAETiling]:
    """Within this scope the VAE uses the handle's tiling, or one planned from the free memory."""
    tiling = vae.tiling
    if tiling is None:
        budget = int(AUTO_VAE_BUDGET * host.free_bytes(vae.placement.device))
        tiling = VAETiling(memory_budget=max(budget, 1))
    previous, vae.model.tiling = vae.model.tiling, tiling
    try:
        yield tiling
    finally:
        vae.model.tiling = previous


@contextlib.contextmanager
def running(dit: DiTHandle | None, vae: VAEHandle | None, memory_required: int,
            progress: FrameProgress | None) -> Iterator[None]:
    """Models placed on the compute device, the VAE tiling set, and the DiT observed (Cancel, progress)."""
    handles = [h for h in (dit, vae) if h is not None]
    host.load_models([h.placement for h in handles], memory_required)
    observers = [] if dit is None else [InterruptObserver()]
    if dit is not None and progress is not None:
        observers.append(progress.block_observer(len(dit.model.blocks)))
    with contextlib.ExitStack() as stack:
        if vae is not None:
            stack.enter_context(vae_tiling(vae))
        if dit is not None:
            stack.enter_context(observing(dit.model, *observers))
        yield


def frame_progress(total: int, step: int, stage: str | None = None) -> FrameProgress:
    """A FrameProgress feeding the host's progress bar (ComfyUI's, with previews); `stage`: the one stage
    this run does (the modular nodes), else all three."""
    bar = host.Progress(max(1, total))
    return FrameProgress(total, step, bar.update, None if stage is None else {stage: (0.0, 1.0)})


def upscale_images(images: torch.Tensor, dit: DiTHandle, vae: VAEHandle, options: RestoreOptions) -> torch.Tensor:
    """IMAGE (T, H, W, 3|4) float [0, 1] -> restored IMAGE (T, h, w, 3|4) float32 on the host's output device."""
    images = check_images(images)
    rgb, alpha = split_alpha(images)
    plan = plan_size(options.size, int(images.shape[1]), int(images.shape[2]))
    out = torch.empty(len(images), *plan.output_hw, images.shape[-1], device=host.output_device())
    progress = frame_progress(len(images), options.batch_size - options.overlap)
    done = 0
    with running(dit, vae, dit_activation_bytes(dit, plan, options.batch_size), progress):
        stream = restore_stream(rgb, dit.model, vae.model, dit.text, options, output_dtype=torch.float32,
                                stages=progress.stage)
        for chunk in stream:
            if alpha is not None:
                chunk = attach_alpha(chunk, resize_alpha(alpha[done: done + len(chunk)], plan))
            out[done: done + len(chunk)] = chunk
            done += len(chunk)
            progress.frames_done(done, chunk[-1, ..., :3])
    return out


def encode_images(images: torch.Tensor, vae: VAEHandle, size: SizeRequest, batch_size: int,
                  overlap: int) -> ClipLatent:
    """IMAGE (T, H, W, 3|4) -> "encoded" ClipLatent (see clip.py)."""
    images = check_images(images)
    check_batching(batch_size, overlap)
    progress = frame_progress(len(images), batch_size - overlap, "encode")
    with running(None, vae, 0, progress):
        return encode_clip(images, vae.model, size, batch_size, overlap, progress.stage)


def restore_latent(latent: ClipLatent, dit: DiTHandle, seed: int) -> ClipLatent:
    """"encoded" ClipLatent -> "restored" one, one DiT step per batch."""
    progress = frame_progress(len(latent.batches), 1, "dit")
    with running(dit, None, dit_activation_bytes(dit, latent.plan, latent.batch_size), progress):
        return restore_clip(latent, dit.model, dit.text, seed, progress.frames_done)


def decode_latent(latent: ClipLatent, vae: VAEHandle, color_fix: str) -> torch.Tensor:
    """"restored" ClipLatent -> IMAGE (T, h, w, 3|4) float32 on the host's output device."""
    out = torch.empty(latent.frames, *latent.plan.output_hw, latent.source.shape[-1], device=host.output_device())
    progress = frame_progress(latent.frames, latent.batch_size - latent.overlap, "decode")
    done = 0
    with running(None, vae, 0, progress):
        for chunk in decode_clip(latent, vae.model, color_fix, progress.stage):
            out[done: done + len(chunk)] = chunk
            done += len(chunk)
            progress.frames_done(done, chunk[-1, ..., :3])
    return out


def upscale_video(source, dit: DiTHandle, vae: VAEHandle, options: RestoreOptions) -> Path:
    """A video file path or in-memory file -> path of the restored .mp4 (same fps, frame count and audio) in
    the host's temporary folder; frames stream from the source to the file (see video_job.py)."""

    def restorer(info: MediaInfo) -> Restorer:
        plan = plan_size(options.size, info.height, info.width)
        progress = frame_progress(info.frames or 1, options.batch_size - options.overlap)
        log.info("SeedVR2 video: %s; %s", info.describe(), plan.describe())

        def restore(frames, state):
            with running(dit, vae, dit_activation_bytes(dit, plan, options.batch_size), progress):
                for chunk in restore_stream(frames, dit.model, vae.model, dit.text, options, state=state,
                                            stages=progress.stage):
                    yield chunk
                    progress.frames_done(state.next_frame, chunk[-1].float() / 255)

        return restore

    output = Path(host.temp_folder()) / f"seedvr2_{uuid.uuid4().hex[:12]}.mp4"
    return restore_video(source, output, restorer)
