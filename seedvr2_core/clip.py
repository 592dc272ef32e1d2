"""A clip through the pipeline's stages one at a time, for the modular nodes: encode -> restore -> decode.

The clip is cut into the temporal batches `restore_stream` uses and every stage calls the pipeline's own
stage functions, so encode -> restore -> decode with the same options gives exactly the frames
`restore_stream` gives. Encoding keeps the posterior moments rather than a sample, so that the seed is
chosen in one place, the restore step, which draws both the posterior noise and the diffusion noise.

A `ClipLatent` carries what the later stages need: the size plan (sizes, crop, padding), every batch's
frame range and latent, and the input frames themselves (by reference, not copied): decoding takes the
colour reference from them batch by batch, and re-attaches their alpha channel if they have one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterator

import torch

from . import host
from .batching import Crossfader, check_batching, temporal_batches
from .config import VAEConfig
from .errors import InputError
from .images import attach_alpha, check_images, resize_alpha, split_alpha
from .noise import SeededNoise
from .pipeline import (
    StageProgress,
    tile_progress,
    condition_latent,
    decode_batch,
    encode_moments_batch,
    fix_colors,
    sample_batch,
)
from .sizing import SizePlan, SizeRequest, plan_size
from .transforms import frames_to_model, model_to_frames, pad_frames_4n1

STAGES = ("encoded", "restored")


@dataclass(frozen=True)
class LatentBatch:
    """One temporal batch: frames [start, start + frames), the first `overlap` shared with the previous batch."""

    start: int
    frames: int
    overlap: int
    is_last: bool
    latent: torch.Tensor  # "encoded": moments (1, 32, T', h, w); "restored": x_0 (T', h, w, 16) float32


@dataclass(frozen=True)
class ClipLatent:
    """The SEEDVR2_LATENT passed between the Encode, Restore and Decode nodes."""

    stage: str
    source: torch.Tensor  # the input frames (T, H, W, 3|4) float [0, 1], as given (colour reference, alpha)
    plan: SizePlan
    batch_size: int
    overlap: int
    batches: tuple[LatentBatch, ...]
    vae_config: VAEConfig
    latent_dtype: torch.dtype  # the VAE compute dtype the posterior is sampled in
    seed: int | None = None  # set by the restore step

    @property
    def frames(self) -> int:
        return int(self.source.shape[0])

    def describe(self) -> str:
        latent = self.batches[0].latent
        return (f"SeedVR2 {self.stage} latent: {self.frames} frames in {len(self.batches)} batches, "
                f"{self.plan.describe()}, first batch latent {tuple(latent.shape)}")


def encode_clip(images: torch.Tensor, vae, size: SizeRequest, batch_size: int, overlap: int,
                stages: StageProgress | None = None) -> ClipLatent:
    """IMAGE (T, H, W, 3|4) float [0, 1] -> "encoded" ClipLatent (posterior moments of every batch, on the CPU)."""
    images = check_images(images)
    check_batching(batch_size, overlap)
    plan = plan_size(size, int(images.shape[1]), int(images.shape[2]))
    rgb, _ = split_alpha(images)
    batches = []
    for batch in temporal_batches(rgb, batch_size, overlap):
        host.check_interrupt()
        video = pad_frames_4n1(frames_to_model(torch.stack(batch.frames), plan))
        moments = encode_moments_batch(vae, video, tile_progress(stages, "encode")).cpu()
        batches.append(LatentBatch(batch.start, len(batch.frames), batch.overlap, batch.is_last, moments))
    return ClipLatent("encoded", images, plan, batch_size, overlap, tuple(batches), vae.config, vae.compute_dtype)


def restore_clip(clip: ClipLatent, dit, text: torch.Tensor, seed: int,
                 batch_done: Callable[[int], None] | None = None) -> ClipLatent:
    """"encoded" ClipLatent -> "restored" one: every batch's one-step x_0 (T', h, w, 16) float32 on the CPU."""
    if clip.stage != "encoded":
        raise InputError(f"this latent is already {clip.stage}: connect the Encode node's output to Restore")
    noise = SeededNoise(seed)
    restored = []
    for index, batch in enumerate(clip.batches):
        host.check_interrupt()
        device = next(dit.parameters()).device  # where the pipeline samples it: the VAE's device, the same
        cond = condition_latent(batch.latent.to(device), batch.start, noise, clip.vae_config, clip.latent_dtype)
        x0 = sample_batch(dit, cond, batch.start, noise, text).cpu()
        restored.append(replace(batch, latent=x0))
        if batch_done is not None:
            batch_done(index + 1)
    return replace(clip, stage="restored", batches=tuple(restored), seed=seed)


def decode_clip(clip: ClipLatent, vae, color_fix: str, stages: StageProgress | None = None,
                output_dtype: torch.dtype = torch.float32) -> Iterator[torch.Tensor]:
    """"restored" ClipLatent -> chunks of final frames (n, h, w, 3|4) in `output_dtype` ([0, 1] for floats),
    in order, each frame once; the alpha channel of the input, resized, is attached again."""
    if clip.stage != "restored":
        raise InputError("this latent is not restored yet: put the Restore node between Encode and Decode")
    rgb, alpha = split_alpha(clip.source)
    fader = Crossfader()
    done = 0
    for batch in clip.batches:
        host.check_interrupt()
        video = frames_to_model(rgb[batch.start: batch.start + batch.frames], clip.plan)  # (3, n, Hp, Wp)
        decoded = decode_batch(vae, batch.latent, batch.frames, tile_progress(stages, "decode")).float().cpu()
        restored = fix_colors(decoded, video, color_fix)
        final = fader.push(restored, batch.overlap, 0 if batch.is_last else clip.overlap)
        frames = model_to_frames(final, clip.plan, "tchw", output_dtype)
        if alpha is not None:
            matte = resize_alpha(alpha[done: done + len(frames)], clip.plan)
            frames = attach_alpha(frames, matte if output_dtype.is_floating_point else matte.mul(255).round())
        done += len(frames)
        yield frames
