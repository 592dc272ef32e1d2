"""Peak memory of each phase of a restoration batch, from the models' shapes (no tensor is made).

Bytes are those the device allocator holds at a phase's worst moment: what `torch.cuda.max_memory_allocated`
reports on a GPU and `memtrack.tracked_peak` measures on the CPU. A batch of T = 4n+1 frames at the model
size H x W (multiples of 16) goes through four phases:

* encode: VAE weights, the batch's video, the encoder's working set (`vae/cost.py` walks it);
* sample: the DiT weights on the device (all of them, or what block swapping leaves plus its two device
  buffers), the sampler's inputs and output, and the DiT's working set, walked below block by block from
  the layer widths and the window partition (text tokens join every window);
* decode: VAE weights, the latent, the decoder's working set including its output;
* colour: the restored frames and the reference on the host, plus the colour fix's chunk scratch.

On a device with its own memory (a CUDA GPU) only device tensors count; the host-side frames, the restored
copy and the colour fix live in RAM. On a device sharing the host's memory (the CPU) they add up.

Calibration: the DiT walk mirrors `dit/blocks.py` and `dit/window_attention.py` tensor by tensor; the
constants below were measured with `benchmarks/memory_plan.py` (CPU, tracked allocator; see
benchmarks/RESULTS.md). The CUDA ones are marked open until a GPU run checks them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .attention import dense_length
from .config import DiTConfig
from .dit import rope
from .dit.rope import rotated_dims
from .dit.windows import partition_windows
from .offload import ALIGN
from .residency import tensor_groups
from .sizing import padded_frame_count
from .vae.cost import RUNTIME_BYTES as VAE_RUNTIME_BYTES
from .vae.cost import estimate as vae_estimate
from .vae.tiling import VAETiling

# Tensors PyTorch keeps once CUDA kernels ran (cuBLAS / cuBLASLt workspaces through the caching
# allocator): 2 x 32 MiB on Hopper. Open: check with benchmarks/memory_plan.py --device cuda.
CUDA_FIXED_BYTES = 64 << 20
# Colour fix scratch per chunk, in float32 copies of the chunk (3 x pixels), per method: measured with the
# tracked allocator on 1080p frames (benchmarks/memory_plan.py --part color), rounded up.
COLOR_SCRATCH = {"wavelet": 5.1, "adain": 1.1, "lab": 11.5, "hsv": 6.1, "none": 0.0}
# Scratch of PyTorch's attention kernel beyond its output and log-sum-exp rows, in copies of the output:
# the CPU flash kernel takes two more output-sized buffers for 16-bit inputs (measured); CUDA's flash /
# memory-efficient kernels none.
SDPA_SCRATCH = {("cpu", 2): 2.0}
KV_SPLIT = 512  # the CPU flash kernel's key block
# Scratch a matmul takes through the allocator, in copies of its weight: oneDNN's 16-bit CPU matmul
# re-packs the weight (measured with the tracked allocator: 2.0x for narrow weights, 0.1 to 1.3x for
# the 3B's); float32 and CUDA none.
MATMUL_SCRATCH = {("cpu", 2): 2.0}
# Convolution scratch the device allocator holds during a VAE conv, in padded conv inputs (`vae/cost.py`'s
# `scratch`). CPU: oneDNN's scratchpad goes through PyTorch's allocator and measured 1 % of the input
# (benchmarks/memory_plan.py); vae/cost.py's own default (0.7 to 1.3) is fitted to RSS instead. CUDA:
# cuDNN's workspace; open until measured, 0.5 assumed.
VAE_SCRATCH = {"cpu": 0.0, "cuda": 0.5}
# Unmodelled small tensors (modulation vectors, index copies, allocator alignment), as a share of a phase.
SLACK = 0.03


def _cpu_sdpa_thread_bytes(length: int, head_dim: int, elem: int) -> int:
    """Per-thread buffers of PyTorch's CPU flash attention for sequences of `length` (measured with the
    tracked allocator): a float32 query-block x key-block tile with the block's accumulators; for 16-bit
    inputs also the tile in 16 bits and a float32 key-block x 64 buffer."""
    q_split = 256 if length >= 768 else 64 if length >= 192 else 32
    kv_split = min(KV_SPLIT, length)
    extra = q_split * kv_split * elem + kv_split * 64 * 4 if elem < 4 else 0
    return q_split * (kv_split + head_dim + 2) * 4 + extra


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _elem(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


# -- weights ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SwapUnit:
    """Stored bytes of one swapped unit: those packed into a device buffer, and those moved on their own
    (quantised types, which travel with `.to`)."""

    packed: int
    moved: int
    buffer: int = 0  # its room in a device buffer: the packed tensors, each aligned to ALIGN


@dataclass(frozen=True)
class DiTWeights:
    """Stored bytes of a DiT's weights, by swap unit (`offload.BlockSwapper`'s units)."""

    blocks: tuple[SwapUnit, ...]
    io_in: SwapUnit  # vid_in, txt_in, emb_in: swapped with swap_io
    io_out: SwapUnit  # the output layers
    largest_cast: int = 0  # bytes of the largest weight re-made in the compute dtype at use (fp8, GGUF)

    @property
    def total(self) -> int:
        units = (*self.blocks, self.io_in, self.io_out)
        return sum(u.packed + u.moved for u in units)

    def on_device(self, swapped: int, swap_io: bool) -> int:
        """Device bytes of the weights with the first `swapped` blocks (and the io layers) swapped."""
        units = list(self.blocks[:swapped])
        if swap_io:
            units = [self.io_in, *units, self.io_out]
        if not units:
            return self.total
        resident = self.total - sum(u.packed + u.moved for u in units)
        # Two device buffers, one per parity of the unit's position (double buffering), each as large as
        # the largest unit it carries; quantised tensors of the unit in use and of the next one in flight.
        buffers = sum(max((u.buffer for u in units[p::2]), default=0) for p in (0, 1))
        in_flight = max(a.moved + b.moved for a, b in zip(units, units[1:] + [SwapUnit(0, 0)]))
        return resident + buffers + in_flight


def _unit(modules) -> SwapUnit:
    packed = moved = buffer = 0
    for _, t in tensor_groups(modules):
        if type(t) in (torch.Tensor, torch.nn.Parameter) and t.is_contiguous():
            packed, buffer = packed + t.nbytes, buffer + _aligned(t.nbytes)
        else:
            moved += t.nbytes
    return SwapUnit(packed, moved, buffer)


def dit_weights(dit) -> DiTWeights:
    """DiTWeights of a loaded NaDiT, from its own tensors (any storage format)."""
    io_in = [m for m in (getattr(dit, n, None) for n in ("vid_in", "txt_in", "emb_in")) if m is not None]
    io_out = [m for m in (getattr(dit, n, None) for n in ("vid_out_norm", "vid_out_ada", "vid_out")) if m is not None]
    elem = _elem(dit.compute_dtype)
    cast = [t.numel() * elem for _, t in tensor_groups(dit) if t.ndim >= 2 and t.dtype != dit.compute_dtype]
    cast += [math.prod(t.logical_shape) * elem for _, t in tensor_groups(dit) if hasattr(t, "logical_shape")]
    return DiTWeights(tuple(_unit([b]) for b in dit.blocks), _unit(io_in), _unit(io_out), max(cast, default=0))


def module_bytes(module) -> int:
    """Stored bytes of every tensor of a module (tied tensors once)."""
    return sum(t.nbytes for _, t in tensor_groups(module))


# -- the DiT step -------------------------------------------------------------------------------------


def window_groups(cfg: DiTConfig, grid: tuple[int, int, int], shifted: bool) -> list[tuple[int, int]]:
    """(windows, video tokens per window) of each group of equal windows, in `WindowPlan` order."""
    counts: dict[tuple[int, int, int], int] = {}
    for window in partition_windows(grid, cfg.window, shifted):
        shape = tuple(s.stop - s.start for s in window)
        counts[shape] = counts.get(shape, 0) + 1
    return [(g, math.prod(shape)) for shape, g in counts.items()]


def _attention_peak(cfg: DiTConfig, groups, n_vid: int, n_txt: int, elem: int, varlen: bool, device: str) -> int:
    """Bytes of `Attention.forward` at its worst moment, beyond the block's input and normed input."""
    i, n = cfg.inner_dim, n_vid + n_txt
    # q and k normalised and rotated in place in qkv, a few rows at a time (float32 steps unless float32)
    step_rows = min(n, max(1, rope.CHUNK_BYTES // (2 * i * 4)))
    norm_rope = 3 * n * i * elem + (0 if elem == 4 else step_rows * 2 * i * 4)
    # the normed input; then qkv (3) and the packed output; the float32 text sum
    fixed = n * cfg.vid_dim * elem + 4 * n * i * elem + n_txt * i * 4
    if varlen:
        sizes = [g * (v + n_txt) for g, v in groups]  # tokens gathered per group (text joins every window)
        # Every group gathered (q, k, v lists), then concatenated, then the kernel's output.
        return fixed + 7 * sum(sizes) * i * elem
    # Dense: each window gathered at the kernel's length (CPU: padded, `attention.dense_length`).
    lengths = [dense_length(v + n_txt, device) for _, v in groups]
    sizes = [g * length for (g, _), length in zip(groups, lengths)]
    scratch = SDPA_SCRATCH.get((device, elem), 0.0)
    threads = torch.get_num_threads() if device == "cpu" else 0
    peak, prev = 0, 0
    for length, tokens in zip(lengths, sizes):
        # The previous group's output is still referenced while the next one is computed.
        sdpa = prev + int((4 + scratch) * tokens * i * elem)  # q, k, v gathered (one tensor), the attention output
        sdpa += tokens * cfg.heads * 4 + threads * _cpu_sdpa_thread_bytes(length, cfg.head_dim, elem)  # log-sum-exp
        peak, prev = max(peak, sdpa), tokens * i * elem
    return max(n * cfg.vid_dim * elem + norm_rope, fixed + peak)


def _mlp_peak(cfg: DiTConfig, index: int, n_vid: int, n_txt: int, elem: int, device: str) -> int:
    """Bytes of the block's MLP half at its worst moment, beyond the block's input."""
    n, d = n_vid + n_txt, cfg.vid_dim
    vid_only = cfg.last_layer_vid_only and index == cfg.num_layers - 1
    rows = n if not (vid_only or cfg.is_mm_layer(index)) else n_vid  # per-stream MLPs run video rows first
    out_rows = n_vid if vid_only else n
    hidden = rows * cfg.mlp_hidden_dim * elem
    scratch = int(MATMUL_SCRATCH.get((device, elem), 0.0) * d * cfg.mlp_hidden_dim * elem)
    # SwiGLU: gate and value, while the value's projection runs; GELU: the projection's output and the
    # activation, or one hidden tensor while a projection runs.
    inner = 2 * hidden + scratch if cfg.mlp_type == "swiglu" else max(2 * hidden, hidden + scratch)
    base = (3 * n + out_rows) * d * elem  # normed input, attention output, block output; MLP input
    out = out_rows * d * elem
    if cfg.is_mm_layer(index) and not vid_only:  # `run_streams` allocates the output before the MLPs run
        return base + out + inner
    # Shared and video-only MLPs allocate their output at the output projection, when one hidden tensor is left.
    return base + max(inner, hidden + scratch + out)


def dit_working_set(cfg: DiTConfig, latent_thw: tuple[int, int, int], txt_len: int, dtype: torch.dtype,
                    device: str = "cuda", varlen: bool = False, largest_cast: int = 0) -> int:
    """Peak bytes of one DiT forward on a latent (t, h, w) with `txt_len` text tokens, weights excluded.

    device: the device type ("cuda", "cpu"), for the attention kernel's scratch; varlen: a varlen backend.
    """
    t, h, w = latent_thw
    _, ph, pw = cfg.patch_size
    grid = (t, h // ph, w // pw)
    n_vid, n_txt, elem = math.prod(grid), txt_len, _elem(dtype)
    n = n_vid + n_txt
    plans = 0
    block = 0
    pairs = rotated_dims(cfg) // 2
    rot_rows = n if cfg.rope_type == "mmrope3d" else n_vid  # the 7B does not rotate text rows
    for shifted in (False, True):
        groups = window_groups(cfg, grid, shifted)
        # Kept for the whole forward: int64 gather indices per window, one complex64 rotation per packed row
        plans += sum(g * dense_length(v + n_txt, device) * 8 for g, v in groups) + rot_rows * pairs * 8
        attn = _attention_peak(cfg, groups, n_vid, n_txt, elem, varlen, device)
        for index in (k for k in range(cfg.num_layers) if cfg.window_shifted(k) == shifted):
            block = max(block, n * cfg.vid_dim * elem + max(attn, _mlp_peak(cfg, index, n_vid, n_txt, elem, device)))
    n_lat = t * h * w
    patch_in = ph * pw * cfg.vid_in_channels
    embed = n_lat * cfg.vid_in_channels * elem + 2 * n_vid * patch_in * elem + n_vid * cfg.vid_dim * elem
    stack = 2 * n * cfg.vid_dim * elem  # video and text embeddings concatenated into the packed state
    return plans + max(embed, stack, block + largest_cast)


def sampler_io(latent_thw: tuple[int, int, int], txt_len: int, txt_dim: int) -> int:
    """Device bytes of the sampler's float32 tensors: condition, noise, DiT input, text, velocity, x_0."""
    n_lat = math.prod(latent_thw)
    return n_lat * (16 + 16 + 33 + 16 + 16) * 4 + txt_len * txt_dim * 4


def dit_step_bytes(cfg: DiTConfig, frames: int, height: int, width: int, txt_len: int, dtype: torch.dtype,
                   device: str = "cuda", varlen: bool = False, largest_cast: int = 0) -> int:
    """Peak bytes of one DiT step on a batch of `frames` frames of height x width (padded to 4n+1 frames),
    weights excluded: the forward's working set and the sampler's tensors."""
    lat = latent_thw(padded_frame_count(frames), height, width)
    return (dit_working_set(cfg, lat, txt_len, dtype, device, varlen, largest_cast)
            + sampler_io(lat, txt_len, cfg.txt_in_dim))


# -- the VAE and the colour fix -----------------------------------------------------------------------


def latent_thw(frames: int, height: int, width: int) -> tuple[int, int, int]:
    """Latent (t, h, w) of a 4n+1-frame batch of H x W frames."""
    return (frames - 1) // 4 + 1, height // 8, width // 8


def vae_working_set(vae, op: str, frames: int, height: int, width: int, tiling: VAETiling,
                    dtype: torch.dtype, device: str = "cuda") -> int:
    """Peak bytes of an encode / decode call (its output and the call's input on the device included)."""
    lt, lh, lw = latent_thw(frames, height, width)
    elem = _elem(dtype)
    latent = 16 * lt * lh * lw * 4  # float32 latent as the pipeline holds it
    scratch = VAE_SCRATCH.get(device, max(VAE_SCRATCH.values()))
    size = (1, frames, height, width) if op == "encode" else (1, lt, lh, lw)
    # The VAE's own estimate adds the CPU runtime's resident kernels (RSS); a device allocator has none.
    peak = vae_estimate(vae, op, size, tiling, dtype, scratch).peak_bytes - VAE_RUNTIME_BYTES
    if tiling.resolved_mode == "tile" and tiling.tile_size is not None:
        # vae/cost.py costs one tile; the blended output is whole, and each tile is blended in float32.
        out = 2 * latent * elem // 4 if op == "encode" else 3 * frames * height * width * elem
        tile = min(1.0, tiling.tile_size ** 2 / (height * width))
        peak += out + int(3 * out * tile * 4 / elem)
    if op == "encode":
        # The video on the device, the noise, and the posterior sampling's float32 temporaries.
        return peak + 3 * frames * height * width * elem + 5 * latent
    return peak + 3 * latent  # the latent, and its unscaled copy in float32 and the compute dtype


def color_working_set(frames: int, height: int, width: int, method: str, chunk_pixels: int) -> int:
    """Host bytes of `color.color_fix` beyond its inputs and output: float32 scratch of one chunk."""
    per_chunk = max(1, chunk_pixels // (height * width))
    return int(COLOR_SCRATCH.get(method, max(COLOR_SCRATCH.values())) * min(frames, per_chunk) * 3 * height * width * 4)


@dataclass(frozen=True)
class PhaseBytes:
    """A phase's estimated peak on the compute device, with what it is made of (for messages)."""

    name: str
    total: int
    parts: dict[str, int] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, name: str, **parts: int) -> "PhaseBytes":
        work = sum(v for k, v in parts.items() if k != "weights")
        return cls(name, int(parts.get("weights", 0) + work * (1 + SLACK)), dict(parts))


# -- weights of models not loaded (planning tables, benchmarks) ---------------------------------------

# Stored bytes per value of a 2-D weight, by file format (GGUF: block bytes / values per block).
WEIGHT_FORMATS = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "fp8": 1.0, "Q8_0": 34 / 32, "Q4_K": 144 / 256}


def dit_weights_for(cfg: DiTConfig, weight_format: str, compute_dtype: torch.dtype) -> DiTWeights:
    """DiTWeights of a model not loaded: matrices stored in `weight_format`, vectors in float32 (the loaders'
    policy; float16/bfloat16/float32 files are held in the compute dtype)."""
    from .dit.model import NaDiT

    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"unknown weight format {weight_format!r}; known: {', '.join(WEIGHT_FORMATS)}")
    quantised = weight_format.startswith("Q")
    float_file = weight_format in ("float32", "float16", "bfloat16")
    per_value = _elem(compute_dtype) if float_file else WEIGHT_FORMATS[weight_format]
    with torch.device("meta"):
        model = NaDiT(cfg)

    def unit(modules) -> SwapUnit:
        packed = moved = buffer = 0
        for _, t in tensor_groups(modules):
            nbytes = int(t.numel() * (4 if t.ndim < 2 else per_value))
            if t.ndim >= 2 and quantised:
                moved += nbytes
            else:
                packed, buffer = packed + nbytes, buffer + _aligned(nbytes)
        return SwapUnit(packed, moved, buffer)

    io_in = [model.vid_in, model.txt_in, model.emb_in]
    io_out = [m for m in (getattr(model, n, None) for n in ("vid_out_norm", "vid_out_ada", "vid_out")) if m is not None]
    cast = 0 if per_value == _elem(compute_dtype) and not quantised else max(
        t.numel() for _, t in tensor_groups(model) if t.ndim >= 2) * _elem(compute_dtype)
    return DiTWeights(tuple(unit([b]) for b in model.blocks), unit(io_in), unit(io_out), cast)


def vae_bytes_for(vae, dtype: torch.dtype) -> int:
    """Bytes of a VAE's weights held in `dtype` (vectors in float32, as the loader holds them)."""
    return sum(t.numel() * (_elem(dtype) if t.ndim >= 2 else 4) for _, t in tensor_groups(vae))
