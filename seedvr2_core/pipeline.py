"""One-step SeedVR2 restoration of a stream of frames (FACTS.md section 6), batch by batch.

Per temporal batch: frames -> resize / fit to multiples of 16 -> [-1, 1] -> pad to 4n+1 frames by
repeating the last -> VAE encode (posterior sample) -> one DiT step at t = 1000 -> VAE decode -> drop
padded frames -> colour fix against the resized input -> crossfade with the previous batch's overlap ->
crop back -> frames. Frames are read lazily and yielded as soon as they are final, so memory depends on
the batch, never on the length of the video.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from einops import rearrange

from . import host
from .batching import Crossfader, TemporalBatch, check_batching, temporal_batches
from .errors import InputError
from .noise import SeededNoise
from .phases import (  # noqa: F401 (re-exported: the node graph's stages and the tests use them from here)
    NoiseSource,
    StageProgress,
    TileProgress,
    condition_latent,
    decode_batch,
    encode_batch,
    encode_moments_batch,
    fix_colors,
    sample_batch,
    tile_progress,
)
from .runtime import Runtime
from .sizing import SizePlan, SizeRequest, plan_size
from .transforms import frames_to_model, frames_to_unit, model_to_frames, pad_frames_4n1

log = logging.getLogger(__name__)

OFFICIAL_SEED = 666


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
    runtime: Runtime | None = None  # None: the models run where they are, without a memory plan

    def __post_init__(self) -> None:
        if self.runtime is None:
            self.runtime = Runtime(self.dit, self.vae)

    def __call__(self, batch: TemporalBatch) -> torch.Tensor:
        """Batch frames -> colour-fixed restored frames (n, 3, Hp, Wp) in [-1, 1], float32, on the CPU."""
        video = frames_to_model(as_frame_tensor(batch.frames), self.plan)  # (3, n, Hp, Wp)
        n = video.shape[1]
        self.runtime.where = f"of frames {batch.start}-{batch.start + n - 1}"
        cond = self.runtime.encode(pad_frames_4n1(video), batch.start, self.noise, tile_progress(self.stages, "encode"))
        host.check_interrupt()
        x0 = self.runtime.sample(cond, batch.start, self.noise, self.text)
        del cond
        host.check_interrupt()
        restored = self.runtime.decode(x0, n, tile_progress(self.stages, "decode"))
        del x0
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
    runtime: Runtime | None = None,
) -> Iterator[torch.Tensor]:
    """Frames (each (H, W, 3) or (3, H, W), uint8 or float [0, 1]) -> chunks of restored frames
    (n, h, w, 3) in `output_dtype` (uint8, or float in [0, 1]), in order, each frame exactly once.

    `progress(frames_done)` is called after each batch, `stages(stage, tiles_done, tiles_total)` after each
    VAE tile ("encode" / "decode"). Cancellation is checked between stages.
    `state`, if given, is updated before each chunk is yielded; a saved state continues a stream: pass the
    frames from `state.next_frame` on.
    `runtime`: runs the phases under a memory plan (its preflight runs before the first batch and may
    lower the batch size); None runs the models where they are.
    """
    if runtime is None:  # one of our own, closed when the stream ends (it may hold packed CPU weights)
        with Runtime(dit, vae) as runtime:
            yield from restore_stream(frames, dit, vae, text, options, noise, output_dtype, progress, state,
                                      stages, runtime)
        return
    noise = noise or SeededNoise(options.seed)
    state = state if state is not None else StreamState()
    stream = iter(frames)
    first = next(stream, None)
    if first is None:
        raise InputError("no frames to restore: the input is empty")
    height, width = frames_to_unit(as_frame_tensor([first])).shape[-2:]
    plan = plan_size(options.size, int(height), int(width))
    log.info("SeedVR2 size plan: %s", plan.describe())
    shared = 0 if state.tail is None else len(state.tail)
    memory = runtime.prepare(*plan.padded_hw, options.batch_size, len(text), options.color_fix, options.overlap)
    if memory is not None and memory.batch_frames != options.batch_size:
        batch = memory.batch_frames
        if shared > batch - 1:
            raise InputError(f"the memory plan allows batches of {batch} frames, too few to continue a run saved "
                             f"with {shared} overlapping frames: resume with the budget of the first run")
        options = dataclasses.replace(options, batch_size=batch, overlap=min(options.overlap, batch - 1))
    restorer = BatchRestorer(dit, vae, text, plan, options, noise, stages, runtime)
    fader = Crossfader(state.tail)
    frames = itertools.chain([first], stream)
    for batch in temporal_batches(frames, options.batch_size, options.overlap, state.next_frame, shared):
        host.check_interrupt()
        restored = restorer(batch)
        final = fader.push(restored, batch.overlap, 0 if batch.is_last else options.overlap)
        state.next_frame, state.tail = batch.start + len(final), fader.tail
        if progress is not None:
            progress(state.next_frame)
        yield model_to_frames(final, restorer.plan, "tchw", output_dtype)


def restore(frames, dit, vae, text: torch.Tensor, **options) -> torch.Tensor:
    """All frames at once: frames (T, H, W, 3) uint8 or float [0, 1] -> restored (T, h, w, 3) uint8.

    Options are RestoreOptions fields (size=SizeRequest(...), batch_size, overlap, color_fix, seed), and
    output_dtype, noise, runtime as for `restore_stream`.
    """
    output_dtype = options.pop("output_dtype", torch.uint8)
    noise = options.pop("noise", None)
    runtime = options.pop("runtime", None)
    frames = as_frame_tensor(frames)
    chunks = list(restore_stream(list(frames), dit, vae, text, RestoreOptions(**options), noise, output_dtype,
                                 runtime=runtime))
    return torch.cat(chunks)
