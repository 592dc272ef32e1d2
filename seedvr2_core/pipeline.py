"""One-step SeedVR2 restoration of a stream of frames (FACTS.md section 6), batch by batch.

Per temporal batch: frames -> resize / fit to multiples of 16 -> [-1, 1] -> pad to 4n+1 frames by
repeating the last -> VAE encode (posterior sample) -> one DiT step at t = 1000 -> VAE decode -> drop
padded frames -> colour fix against the resized input -> crossfade with the previous batch's overlap ->
crop back -> frames. Frames are read lazily and yielded as soon as they are final, so memory depends on
the batch, never on the length of the video.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np
import torch
from einops import rearrange

from . import host
from .batching import Crossfader, TemporalBatch, check_batching, temporal_batches
from .color import color_fix
from .errors import InputError
from .noise import SeededNoise, latent_frame_keys
from .sampler import one_step
from .sizing import SizePlan, SizeRequest, plan_size
from .transforms import frames_to_model, frames_to_unit, model_to_frames, pad_frames_4n1
from .vae.model import sample_posterior

log = logging.getLogger(__name__)

OFFICIAL_SEED = 666


TileProgress = Callable[[int, int], None]  # (tiles done, tiles total) of one VAE call
StageProgress = Callable[[str, int, int], None]  # (stage, tiles done, tiles total)


class NoiseSource(Protocol):
    def draw(self, keys: list[int], shape: tuple[int, int, int], stream: str) -> torch.Tensor: ...


@dataclass(frozen=True)
class RestoreOptions:
    """Everything that decides the output besides the models and the frames."""

    size: SizeRequest = field(default_factory=SizeRequest)
    batch_size: int = 21  # frames per temporal batch; 4n+1 avoids padding
    overlap: int = 2  # frames shared by consecutive batches, crossfaded
    color_fix: str = "wavelet"
    seed: int = OFFICIAL_SEED

    def __post_init__(self) -> None:
        check_batching(self.batch_size, self.overlap)


@dataclass
class StreamState:
    """Where a restoration stream stands, kept current by `restore_stream` before each chunk it yields.

    Frames before `next_frame` are final. `tail` (overlap, 3, Hp, Wp) float32 holds the last batch's
    restored copies of the frames from `next_frame` on, which the next batch blends with. Saved and given
    back with the input from `next_frame` on, it continues the stream exactly (noise is keyed by position).
    """

    next_frame: int = 0
    tail: torch.Tensor | None = None


def as_frame_tensor(frames) -> torch.Tensor:
    """A list/array/tensor of frames (T, H, W, C) or (T, C, H, W) -> tensor, RGB only."""
    if isinstance(frames, (list, tuple)):
        frames = [torch.from_numpy(np.ascontiguousarray(f)) if isinstance(f, np.ndarray) else f for f in frames]
        frames = torch.stack(frames)
    elif isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if frames.ndim == 3:
        frames = frames[None]
    return frames


def encode_moments_batch(vae, video: torch.Tensor, progress: TileProgress | None = None) -> torch.Tensor:
    """video (3, T, H, W) in [-1, 1], T = 4n+1 -> posterior moments (1, 32, T', H/8, W/8), VAE compute dtype."""
    return vae.encode_moments(video[None], progress=progress)


def condition_latent(moments: torch.Tensor, start: int, noise: NoiseSource, vae_config,
                     dtype: torch.dtype) -> torch.Tensor:
    """Moments (1, 32, T', h, w) of the batch starting at video frame `start` -> condition latent (T', h, w, 16),
    float32: the posterior sampled with eps keyed by frame position, as the VAE's `encode` does."""
    channels, latent_frames, h, w = moments.shape[1] // 2, *moments.shape[2:]
    keys = latent_frame_keys(start, latent_frames)
    eps = rearrange(noise.draw(keys, (channels, h, w), "posterior"), "t c h w -> 1 c t h w")
    latent = sample_posterior(moments, eps, vae_config, dtype)  # (1, 16, T', h, w)
    return rearrange(latent[0], "c t h w -> t h w c").float()


def encode_batch(vae, video: torch.Tensor, start: int, noise: NoiseSource,
                 progress: TileProgress | None = None) -> torch.Tensor:
    """video (3, T, H, W) in [-1, 1], T = 4n+1 -> condition latent (T', H/8, W/8, 16), float32."""
    moments = encode_moments_batch(vae, video, progress)
    return condition_latent(moments, start, noise, vae.config, vae.compute_dtype)


def sample_batch(dit, cond: torch.Tensor, start: int, noise: NoiseSource, text: torch.Tensor) -> torch.Tensor:
    """Condition latent (T', h, w, 16) -> restored latent x_0 (T', h, w, 16), float32."""
    x_t = noise.draw(latent_frame_keys(start, cond.shape[0]), tuple(cond.shape[1:]), "noise")
    return one_step(dit, [cond], [x_t], text)[0]


def decode_batch(vae, x0: torch.Tensor, frames: int, progress: TileProgress | None = None) -> torch.Tensor:
    """Restored latent (T', h, w, 16) -> the batch's first `frames` frames (frames, 3, H, W) in [-1, 1]."""
    video = vae.decode(rearrange(x0, "t h w c -> 1 c t h w"), progress=progress)[0]  # (3, T, H, W)
    return rearrange(video[:, :frames], "c t h w -> t c h w")


def fix_colors(restored: torch.Tensor, video: torch.Tensor, method: str) -> torch.Tensor:
    """Decoded frames (n, 3, Hp, Wp) float32 on the CPU, corrected in place against the model input video
    (3, n, Hp, Wp) they were restored from; returns them."""
    reference = rearrange(video, "c t h w -> t c h w")
    return color_fix(restored, reference, method, out=restored)


def tile_progress(stages: StageProgress | None, stage: str) -> TileProgress | None:
    """The per-tile callback of one stage, reporting to `stages(stage, done, total)`; None without `stages`."""
    if stages is None:
        return None
    return lambda done, total: stages(stage, done, total)


@dataclass
class BatchRestorer:
    """Restores temporal batches of one video with fixed models, plan and options."""

    dit: torch.nn.Module
    vae: object
    text: torch.Tensor
    plan: SizePlan
    options: RestoreOptions
    noise: NoiseSource
    stages: StageProgress | None = None  # stages("encode" | "decode", tiles_done, tiles_total)

    def __call__(self, batch: TemporalBatch) -> torch.Tensor:
        """Batch frames -> colour-fixed restored frames (n, 3, Hp, Wp) in [-1, 1], float32, on the CPU."""
        video = frames_to_model(as_frame_tensor(batch.frames), self.plan)  # (3, n, Hp, Wp)
        n = video.shape[1]
        cond = encode_batch(self.vae, pad_frames_4n1(video), batch.start, self.noise,
                            tile_progress(self.stages, "encode"))
        host.check_interrupt()
        x0 = sample_batch(self.dit, cond, batch.start, self.noise, self.text)
        host.check_interrupt()
        restored = decode_batch(self.vae, x0, n, tile_progress(self.stages, "decode")).float().cpu()
        return fix_colors(restored, video, self.options.color_fix)


def restore_stream(
    frames: Iterable,
    dit,
    vae,
    text: torch.Tensor,
    options: RestoreOptions = RestoreOptions(),
    noise: NoiseSource | None = None,
    output_dtype: torch.dtype = torch.uint8,
    progress: Callable[[int], None] | None = None,
    state: StreamState | None = None,
    stages: StageProgress | None = None,
) -> Iterator[torch.Tensor]:
    """Frames (each (H, W, 3) or (3, H, W), uint8 or float [0, 1]) -> chunks of restored frames
    (n, h, w, 3) in `output_dtype` (uint8, or float in [0, 1]), in order, each frame exactly once.

    `progress(frames_done)` is called after each batch, `stages(stage, tiles_done, tiles_total)` after each
    VAE tile ("encode" / "decode"). Cancellation is checked between stages.
    `state`, if given, is updated before each chunk is yielded; a saved state continues a stream: pass the
    frames from `state.next_frame` on.
    """
    noise = noise or SeededNoise(options.seed)
    state = state if state is not None else StreamState()
    fader = Crossfader(state.tail)
    restorer: BatchRestorer | None = None
    shared = 0 if state.tail is None else len(state.tail)
    for batch in temporal_batches(frames, options.batch_size, options.overlap, state.next_frame, shared):
        host.check_interrupt()
        if restorer is None:
            height, width = frames_to_unit(as_frame_tensor(batch.frames[:1])).shape[-2:]
            plan = plan_size(options.size, int(height), int(width))
            log.info("SeedVR2 size plan: %s", plan.describe())
            restorer = BatchRestorer(dit, vae, text, plan, options, noise, stages)
        restored = restorer(batch)
        final = fader.push(restored, batch.overlap, 0 if batch.is_last else options.overlap)
        state.next_frame, state.tail = batch.start + len(final), fader.tail
        if progress is not None:
            progress(state.next_frame)
        yield model_to_frames(final, restorer.plan, "tchw", output_dtype)
    if restorer is None:
        raise InputError("no frames to restore: the input is empty")


def restore(frames, dit, vae, text: torch.Tensor, **options) -> torch.Tensor:
    """All frames at once: frames (T, H, W, 3) uint8 or float [0, 1] -> restored (T, h, w, 3) uint8.

    Options are RestoreOptions fields (size=SizeRequest(...), batch_size, overlap, color_fix, seed).
    """
    output_dtype = options.pop("output_dtype", torch.uint8)
    noise = options.pop("noise", None)
    frames = as_frame_tensor(frames)
    chunks = list(restore_stream(list(frames), dit, vae, text, RestoreOptions(**options), noise, output_dtype))
    return torch.cat(chunks)
