"""VideoAutoencoder: the SeedVR2 causal video VAE with the pack's encode/decode API.

Official behaviour reproduced (`VideoAutoencoderKLWrapper`, FACTS.md section 5): T = 4n+1 frames <->
n+1 latent frames, 8x spatial; the encoder's 2 x 16 output channels are the posterior mean and log-variance
(clamped to [-30, 20]); the latent is (mean + exp(logvar / 2) * eps) * 0.9152 (scaling factor, shift 0);
decode divides by the scaling factor first.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..config import VAEConfig
from ..errors import InputError
from .engine import StreamState, run_chunk
from .layers import Decoder, Encoder
from .program import decoder_program, encoder_program
from .tensors import release_free_memory
from .tiles import Span, overlapping, ramp_weights
from .tiling import VAETiling, frame_plan, latent_chunks, pixel_range, whole_frame_plan

Progress = Callable[[int, int], None]
LOGVAR_RANGE = (-30.0, 20.0)


class VideoAutoencoder(nn.Module):
    """encode(video (B, 3, 4n+1, H, W) in [-1, 1]) -> latent (B, 16, n+1, H/8, W/8); decode inverts it."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.compute_dtype = torch.float32
        self.tiling = VAETiling()
        self._programs: dict[str, list] = {}

    def program(self, op: str):
        """The step list of "encode" or "decode" (built once; a VAE may drop the half it does not use)."""
        if op not in self._programs:
            if op == "encode":
                self._programs[op] = encoder_program(self.encoder)
            else:
                self._programs[op] = decoder_program(self.decoder, self.config.spatial_downsample_factor)
        return self._programs[op]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- public API ---------------------------------------------------------------------------------

    def encode(self, video: torch.Tensor, noise: torch.Tensor | None = None, *, tiling: VAETiling | None = None,
               progress: Progress | None = None) -> torch.Tensor:
        """video (B, 3, T=4n+1, H, W) in [-1, 1] -> scaled latent (B, 16, n+1, H/8, W/8), compute dtype.

        noise: the posterior eps of the latent's shape (None: the posterior mean).
        """
        if noise is not None:  # refuse a wrong eps before spending the encode on it
            b, t, h, w = self._check_video(video)
            cfg, s = self.config, self.config.spatial_downsample_factor
            shape = (b, cfg.latent_channels, (t - 1) // cfg.temporal_downsample_factor + 1, h // s, w // s)
            if tuple(noise.shape) != shape:
                raise InputError(f"noise has shape {tuple(noise.shape)}, expected the latent's shape {shape}")
        moments = self.encode_moments(video, tiling=tiling, progress=progress)
        return sample_posterior(moments, noise, self.config, self.compute_dtype)

    def encode_moments(self, video: torch.Tensor, *, tiling: VAETiling | None = None,
                       progress: Progress | None = None) -> torch.Tensor:
        """video (B, 3, T=4n+1, H, W) in [-1, 1] -> posterior [mean | log-variance] (B, 32, n+1, H/8, W/8),
        compute dtype; `sample_posterior` turns it into the latent `encode` returns."""
        cfg = self.config
        b, t, h, w = self._check_video(video)
        tiling = self._tiling(tiling, "encode", (b, t, h, w))
        x = video.to(self.device, self.compute_dtype)
        return self._run(self.program("encode"), x, (t - 1) // cfg.temporal_downsample_factor + 1, tiling, progress,
                         encode=True)

    def decode(self, latent: torch.Tensor, *, tiling: VAETiling | None = None,
               progress: Progress | None = None) -> torch.Tensor:
        """latent (B, 16, t, h, w) (scaled, as `encode` returns) -> video (B, 3, 4(t-1)+1, 8h, 8w), compute dtype."""
        cfg = self.config
        if latent.ndim != 5 or latent.shape[1] != cfg.latent_channels:
            raise InputError(
                f"latent must be (B, {cfg.latent_channels}, t, h, w), got shape {tuple(latent.shape)}"
            )
        b, _, t, h, w = latent.shape
        tiling = self._tiling(tiling, "decode", (b, t, h, w))
        z = latent.to(self.device, torch.float32) / cfg.scaling_factor + cfg.shifting_factor
        return self._run(self.program("decode"), z.to(self.compute_dtype), t, tiling, progress, encode=False)

    # -- internals ----------------------------------------------------------------------------------

    def _check_video(self, video: torch.Tensor) -> tuple[int, int, int, int]:
        cfg = self.config
        if video.ndim != 5 or video.shape[1] != cfg.in_channels:
            raise InputError(f"video must be (B, {cfg.in_channels}, T, H, W), got shape {tuple(video.shape)}")
        b, _, t, h, w = video.shape
        f, s = cfg.temporal_downsample_factor, cfg.spatial_downsample_factor
        if t % f != 1 % f:
            raise InputError(
                f"video has {t} frames; the VAE needs {f}n+1 frames (pad the clip, e.g. to {t + (1 - t) % f})"
            )
        if h % s or w % s or h == 0 or w == 0:
            raise InputError(f"video frames are {h}x{w}; height and width must be positive multiples of {s}")
        if not video.is_floating_point():
            raise InputError(f"video must be a floating-point tensor in [-1, 1], got {video.dtype}")
        return b, t, h, w

    def _tiling(self, tiling: VAETiling | None, op: str, size: tuple[int, int, int, int]) -> VAETiling:
        from .cost import plan_tiling

        tiling = tiling or self.tiling
        if tiling.memory_budget is None:
            return tiling
        return plan_tiling(self, op, size, tiling, self.compute_dtype)

    def _run(self, steps, x: torch.Tensor, latent_frames: int, tiling: VAETiling, progress, encode: bool):
        if tiling.resolved_mode == "tile" and tiling.tile_size is not None:
            return run_independent(self, steps, x, latent_frames, tiling, progress, encode)
        plan = frame_plan(tiling.tile_size, self.config.block_out_channels[0])
        return run_chunks(self, steps, x, latent_frames, tiling, plan, progress, encode)


def sample_posterior(moments: torch.Tensor, noise: torch.Tensor | None, config: VAEConfig,
                     dtype: torch.dtype) -> torch.Tensor:
    """Moments (B, 32, t, h, w) from `encode_moments` and eps of the latent's shape (None: the mean) ->
    scaled latent (B, 16, t, h, w) in `dtype`, computed on the moments' device."""
    mean, logvar = moments.float().chunk(2, dim=1)
    if noise is not None and tuple(noise.shape) != tuple(mean.shape):
        raise InputError(f"noise has shape {tuple(noise.shape)}, expected the latent's shape {tuple(mean.shape)}")
    z = mean
    if noise is not None:
        std = torch.exp(0.5 * logvar.clamp(*LOGVAR_RANGE))
        z = mean + std * noise.to(mean.device, torch.float32)
    return ((z - config.shifting_factor) * config.scaling_factor).to(dtype)


def run_chunks(vae: VideoAutoencoder, steps, x: torch.Tensor, latent_frames: int, tiling: VAETiling, plan,
               progress: Progress | None, encode: bool, state: StreamState | None = None) -> torch.Tensor:
    """Stream x through `steps` chunk by chunk; returns the whole output (B, C, T, H, W), contiguous."""
    factor = vae.config.temporal_downsample_factor
    chunks = latent_chunks(latent_frames, tiling.chunk_size)
    state = state or StreamState()
    total = len(chunks) * sum(len(plan(s, *_out_hw(vae, s, x, encode))) for s in steps)
    done = [0]

    def tick():
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    out = None
    for k, (lo, hi) in enumerate(chunks):
        state.last = k == len(chunks) - 1
        if encode:
            p0, p1 = pixel_range(lo, hi, factor)
            part = x[:, :, p0:p1]
            o0, o1 = lo, hi
        else:
            part = x[:, :, lo:hi]
            o0, o1 = pixel_range(lo, hi, factor)
        y = run_chunk(steps, part, state, plan, tick)
        if out is None:
            frames = latent_frames if encode else pixel_range(0, latent_frames, factor)[1]
            out = y.new_empty(*y.shape[:2], frames, *y.shape[3:])
        out[:, :, o0:o1] = y
        del y
        release_free_memory()  # keep resident memory flat over long clips
    return out


def _out_hw(vae: VideoAutoencoder, step, x: torch.Tensor, encode: bool) -> tuple[int, int]:
    """Output size of `step` for input x: the image size divided by the step's scale."""
    s = vae.config.spatial_downsample_factor
    h, w = x.shape[3:]
    if not encode:
        h, w = h * s, w * s
    return h // step.scale, w // step.scale


# -- mode "tile" ------------------------------------------------------------------------------------------
# Mode "tile": independent overlapping tiles, each streamed through the whole clip, blended linearly.
#
# Each tile is encoded or decoded as if it were the whole frame (its own GroupNorm statistics, attention
# and temporal caches), so memory is that of one tile whatever the frame size and the clip length. The
# tile outputs are blended with linear ramps over the overlaps; the weights of every output position are
# positive only inside the tiles covering it and sum to one, so sizes, frame counts and value ranges
# stay those of the untiled output.


def tile_spans(cfg, op: str, h: int, w: int, tiling: VAETiling) -> tuple[list[Span], list[Span], int]:
    """Row and column spans of the tiles on the latent grid, and the input pixels per latent pixel.

    h, w: the call's input size (video pixels for "encode", latent positions for "decode").
    """
    s = cfg.spatial_downsample_factor
    in_scale = s if op == "encode" else 1
    lh, lw = h // in_scale, w // in_scale
    tile = max(1, tiling.tile_size // s)
    overlap = tiling.tile_overlap // s
    return overlapping(lh, tile, overlap), overlapping(lw, tile, overlap), in_scale


def run_independent(vae, steps, x: torch.Tensor, latent_frames: int, tiling: VAETiling, progress,
                    encode: bool) -> torch.Tensor:
    """Encode (x: video) or decode (x: latent) in independent tiles of `tiling.tile_size` image pixels."""
    s = vae.config.spatial_downsample_factor
    # Tiles are laid out on the latent grid, so encoder tiles are whole latent pixels.
    rows, cols, in_scale = tile_spans(vae.config, "encode" if encode else "decode", *x.shape[3:], tiling)
    lh, lw = x.shape[3] // in_scale, x.shape[4] // in_scale
    out_scale = 1 if encode else s  # output pixels per latent pixel
    wr = ramp_weights([Span(r.lo * out_scale, r.hi * out_scale) for r in rows], lh * out_scale)
    wc = ramp_weights([Span(c.lo * out_scale, c.hi * out_scale) for c in cols], lw * out_scale)
    n_tiles = len(rows) * len(cols)
    out = None
    for k, (i, j) in enumerate((i, j) for i in range(len(rows)) for j in range(len(cols))):
        r, c = rows[i], cols[j]
        part = x[:, :, :, r.lo * in_scale:r.hi * in_scale, c.lo * in_scale:c.hi * in_scale]
        sub = None if progress is None else (lambda d, t, k=k: progress(k * t + d, n_tiles * t))
        y = run_chunks(vae, steps, part, latent_frames, tiling, whole_frame_plan, sub, encode)
        if out is None:
            out = torch.zeros(*y.shape[:3], lh * out_scale, lw * out_scale, dtype=y.dtype, device=y.device)
        weight = (wr[i][:, None] * wc[j][None, :]).to(y.device)
        region = out[:, :, :, r.lo * out_scale:r.hi * out_scale, c.lo * out_scale:c.hi * out_scale]
        # Accumulate in float32 per tile (the output keeps the compute dtype: no second full-size buffer).
        region.copy_(region.float() + y.float() * weight)
        del y, region
    return out
