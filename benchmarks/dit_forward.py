"""DiT forward efficiency on CPU: achieved FLOP/s over a plain matmul's, and time outside kernels.

Builds the real SeedVR2-3B (or 7B) width and depth with random weights directly in memory (no file),
runs one forward at a small latent (default 5 latent frames of 16x16, the official 58 text tokens),
and prints, from the same run:
  * FLOP/s of the forward (FLOPs counted by torch.utils.flop_counter) over the FLOP/s of one plain
    torch.matmul with the largest linear's shape as the forward runs it (the layer and row count with the
    most FLOPs: the 3B's q/k/v projection over video and text rows, which its shared layers project
    together), and, for comparison, over one with the MLP's input shape at the video rows only (the
    reference this benchmark used before);
  * the share of profiled CPU time spent outside matmul and attention kernels (median over forwards).
In 16 bits on a CPU with oneDNN's bf16 kernels the linear weights are packed first, as a CPU run packs
them (seedvr2_core/cpu_pack.py); --no-pack measures the plain weights.
Usage: python benchmarks/dit_forward.py [--variant seedvr2-3b] [--dtype float32|bfloat16] [--frames 5 --size 16]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seedvr2_core import NaDiT, load_dit, make_dit_config  # noqa: E402
from seedvr2_core.cpu_pack import packed_linears  # noqa: E402
from seedvr2_core.random_weights import random_state_dict  # noqa: E402

KERNELS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
           "aten::_flash_attention_forward", "aten::_efficient_attention_forward", "mkldnn::_linear_pointwise")


@register_flop_formula(torch.ops.mkldnn._linear_pointwise)
def _packed_linear_flops(x_shape, *args, out_shape=None, **kwargs) -> int:
    """The packed CPU linears (seedvr2_core/cpu_pack.py) are oneDNN ops the FLOP counter has no formula
    for: the multiply-adds of the plain matmul, epilogues not counted (as the plain path's silu and mul)."""
    return 2 * math.prod(out_shape) * x_shape[-1]


def build(variant: str, dtype: torch.dtype) -> NaDiT:
    with torch.device("meta"):
        meta = NaDiT(make_dit_config(variant))
    return load_dit(random_state_dict(meta, seed=0, dtype=dtype), dtype=dtype)


def inputs(model: NaDiT, frames: int, size: int, txt_len: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(0)
    cfg = model.config
    vid = torch.randn(frames * size * size, cfg.vid_in_channels, generator=g, dtype=torch.float32)
    txt = torch.randn(txt_len, cfg.txt_in_dim, generator=g)
    return (vid.to(dtype), txt.to(dtype), torch.tensor([[frames, size, size]]), torch.tensor([[txt_len]]),
            torch.tensor([1000.0]))


def largest_linear(cfg, n_vid: int, n_txt: int) -> tuple[int, int, int]:
    """(rows, in, out) of the linear with the most FLOPs in a forward: shared layers project video and text
    rows together, per-stream layers each stream on its own."""
    rows = n_vid + n_txt if cfg.mm_layers < cfg.num_layers else n_vid
    shapes = [(cfg.vid_dim, 3 * cfg.inner_dim), (cfg.vid_dim, cfg.mlp_hidden_dim), (cfg.mlp_hidden_dim, cfg.vid_dim)]
    return max(((rows, i, o) for i, o in shapes), key=lambda s: s[0] * s[1] * s[2])


def outside_share(model: NaDiT, x) -> tuple[float, list]:
    """Share of one forward's profiled CPU time spent outside the matmul and attention kernels, and its events."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model(*x)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return 1 - sum(e.self_cpu_time_total for e in events if e.key in KERNELS) / total, events


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="seedvr2-3b")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--size", type=int, default=16, help="latent height = width (pre-patch)")
    ap.add_argument("--txt", type=int, default=58)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-pack", action="store_true", help="plain weights (no oneDNN-packed copies)")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)

    model = build(args.variant, dtype)
    x = inputs(model, args.frames, args.size, args.txt, dtype)
    cfg = model.config
    tokens = args.frames * (args.size // 2) ** 2
    packing = contextlib.nullcontext(0) if args.no_pack else packed_linears(model, dtype)  # as a CPU run does
    with torch.inference_mode(), packing as packed:
        model(*x)  # warm-up (plans, allocator)
        with FlopCounterMode(display=False) as counter:
            model(*x)
        flops = counter.get_total_flops()
        refs = {"largest linear": largest_linear(cfg, tokens, args.txt),
                "MLP input, video rows": (tokens, cfg.vid_dim, cfg.mlp_hidden_dim)}
        mats = {name: (torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)) for name, (m, k, n) in refs.items()}
        # Interleave the measurements so machine noise hits all alike.
        fwd, mm = [], {name: [] for name in refs}
        for _ in range(args.repeats):
            fwd.append(timed(lambda: model(*x), 1))
            for name, (a, w) in mats.items():
                mm[name].append(timed(lambda a=a, w=w: torch.matmul(a, w), 5))
        t_fwd = statistics.median(fwd)
        profiled = [outside_share(model, x) for _ in range(min(3, args.repeats))]
    outside, events = sorted(profiled, key=lambda p: p[0])[len(profiled) // 2]
    fwd_rate = flops / t_fwd
    print(f"{args.variant} {args.dtype}: {args.frames}x{args.size}x{args.size} latent ({tokens} video + {args.txt} text tokens), "
          f"{torch.get_num_threads()} threads, {packed} linear layers packed for oneDNN")
    print(f"  forward  {flops / 1e9:8.1f} GFLOP in {t_fwd * 1e3:7.1f} ms = {fwd_rate / 1e9:6.1f} GFLOP/s")
    for name, (m, k, n) in refs.items():
        rate = 2 * m * k * n / statistics.median(mm[name])
        print(f"  matmul   ({m}x{k}) @ ({k}x{n}), {name}: {rate / 1e9:6.1f} GFLOP/s, "
              f"ratio forward / matmul FLOP/s: {fwd_rate / rate:.3f}")
    print(f"  time outside matmul and attention kernels: {outside:.1%}")
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]
    for e in top:
        print(f"    {e.key:55s} {e.self_cpu_time_total / total:6.1%}  x{e.count}")


if __name__ == "__main__":
    main()
