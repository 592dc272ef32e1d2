"""Block swapping cost: forward time with 0, half and all DiT blocks swapped, side by side in one run.

Builds a random-weight NaDiT in the official layout (real SeedVR2-3B width and depth by default; reduce
with --layers / --dim on CPU), then for each swap setting times forwards on one random input, in
interleaved rounds, and prints medians, the overhead as a ratio to the resident run, the host-to-device
bytes copied per forward against the swapped weights' stored bytes (must be equal: each swapped weight
crosses once), whether the output is identical to the resident one, and on CUDA the peak device memory.

    python benchmarks/block_swap.py --device cuda                       # 3B fp16, 21 frames at 1080p
    python benchmarks/block_swap.py --device cpu --layers 8 --dim 1024 --frames 5 --height 256 --width 256
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seedvr2_core import NaDiT, load_dit, make_dit_config  # noqa: E402
from seedvr2_core.offload import IO_IN, IO_OUT, BlockSwapper  # noqa: E402

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--variant", default="seedvr2-3b", choices=["seedvr2-3b", "seedvr2-7b"])
    ap.add_argument("--layers", type=int, help="depth (default: the variant's)")
    ap.add_argument("--dim", type=int, help="width, a multiple of 128 (default: the variant's)")
    ap.add_argument("--dtype", choices=list(DTYPES), help="default float16 on CUDA, float32 elsewhere")
    ap.add_argument("--frames", type=int, default=21)
    ap.add_argument("--height", type=int, default=1080, help="video height in pixels")
    ap.add_argument("--width", type=int, default=1920, help="video width in pixels")
    ap.add_argument("--text-tokens", type=int, default=58, help="58 = the official positive prompt")
    ap.add_argument("--swapped", help="comma-separated block counts (default: 0, half, all)")
    ap.add_argument("--swap-io", action="store_true", help="also swap the input and output layers")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the settings")
    ap.add_argument("--forwards", type=int, default=2, help="timed forwards per setting and round")
    ap.add_argument("--attention", default="auto")
    ap.add_argument("--threads", type=int, help="CPU threads (fewer are steadier on a shared machine)")
    return ap.parse_args()


def build_config(args):
    overrides = {}
    base = make_dit_config(args.variant)
    if args.layers is not None:
        overrides["num_layers"] = args.layers
        overrides["mm_layers"] = args.layers if base.mm_layers == base.num_layers else min(base.mm_layers, args.layers)
    if args.dim is not None:
        overrides.update(vid_dim=args.dim, heads=args.dim // base.head_dim)
    return make_dit_config(args.variant, overrides)


def random_weights(cfg, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """Official-layout random weights on the host: matrices N(0, 1/fan_in) in `dtype`, vectors float32."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in NaDiT(cfg).state_dict().items()}
    g = torch.Generator(device).manual_seed(0)
    out = {}
    for key, shape in shapes.items():
        x = torch.randn(shape, generator=g, device=device)  # generated where it is fastest
        if len(shape) >= 2:
            x = x.mul_(1 / math.sqrt(math.prod(shape[1:]))).to(dtype)
        elif key.endswith(("weight", "_scale")):
            x = x.mul_(0.2).add_(1.0)  # norm weights and modulation scales around 1
        else:
            x = x.mul_(0.1)
        out[key] = x.cpu()
    return out


def make_inputs(cfg, args, device: torch.device):
    t = (args.frames - 1) // 4 + 1  # the VAE's 4x causal temporal compression
    h, w = (2 * math.ceil(s / 16) for s in (args.height, args.width))  # 8x spatial, padded to the 2x2 patch
    g = torch.Generator(device).manual_seed(1)
    vid = torch.randn(t * h * w, cfg.vid_in_channels, generator=g, device=device)
    txt = torch.randn(args.text_tokens, cfg.txt_in_dim, generator=g, device=device)
    shapes = (torch.tensor([[t, h, w]]), torch.tensor([[args.text_tokens]]), torch.tensor([1000.0], device=device))
    return (vid, txt, *shapes), (t, h, w)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # timing only; the swapper itself never synchronises


def weight_bytes(model, blocks: int, swap_io: bool) -> int:
    """Stored bytes of the modules swapped in this setting, counted from their own state dicts."""
    modules = list(model.blocks[:blocks])
    if swap_io:
        modules += [getattr(model, n) for n in IO_IN + IO_OUT if hasattr(model, n)]
    return sum(t.nbytes for m in modules for t in m.state_dict().values())


def time_setting(model, inputs, device, blocks: int, args, stats: dict) -> None:
    """One round of one setting: attach, warm up, time `args.forwards` forwards, detach."""
    swap_io = args.swap_io and blocks > 0
    stats["swapped"] = weight_bytes(model, blocks, swap_io)
    with BlockSwapper(model, blocks, device, swap_io=swap_io) as swapper:
        with torch.inference_mode():
            out = model(*inputs)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            for _ in range(args.forwards):
                sync(device)
                start = time.perf_counter()
                out = model(*inputs)
                sync(device)
                stats["times"].append(time.perf_counter() - start)
        stats["bytes"] = swapper.bytes_last_forward
        stats["buffers"] = swapper.device_buffer_bytes
        if device.type == "cuda":
            stats["peak"] = max(stats.get("peak", 0), torch.cuda.max_memory_allocated(device))
    stats["out"] = out.float().cpu()


def report(settings: list[int], stats: dict, layers: int, device: torch.device) -> None:
    base = statistics.median(stats[0]["times"]) if 0 in stats else None
    print(f"{'swapped':>9} {'median s':>9} {'overhead':>9} {'bytes/forward':>15} {'swapped bytes':>15} "
          f"{'once':>5} {'buffers MiB':>11} {'identical':>9}" + (f" {'peak GiB':>9}" if device.type == "cuda" else ""))
    for n in settings:
        s = stats[n]
        median = statistics.median(s["times"])
        overhead = f"{median / base - 1:+9.1%}" if base else f"{'n/a':>9}"
        same = torch.equal(s["out"], stats[0]["out"]) if 0 in stats else None
        line = (f"{n:>4}/{layers:<4} {median:9.3f} {overhead} {s['bytes']:15,d} {s['swapped']:15,d} "
                f"{'yes' if s['bytes'] == s['swapped'] else 'NO':>5} {s['buffers'] / 2**20:11.1f} "
                f"{'n/a' if same is None else 'yes' if same else 'NO':>9}")
        if device.type == "cuda":
            line += f" {s['peak'] / 2**30:9.2f}"
        print(line)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype or ("float16" if device.type == "cuda" else "float32")]
    cfg = build_config(args)
    weights = random_weights(cfg, dtype, device)
    model = load_dit(weights, config=cfg, dtype=dtype, attention=args.attention)
    del weights  # the model holds the only host copy, so packing into pinned arenas does not double it
    inputs, grid = make_inputs(cfg, args, device)
    layers = cfg.num_layers
    settings = [int(n) for n in args.swapped.split(",")] if args.swapped else sorted({0, layers // 2, layers})
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    tokens = grid[0] * (grid[1] // 2) * (grid[2] // 2)
    print(f"{name}: {args.variant} layout, {layers} blocks, width {cfg.vid_dim}, {dtype}, {args.frames} frames at "
          f"{args.height}x{args.width} -> latent {grid} ({tokens} tokens), {args.text_tokens} text tokens, "
          f"{args.rounds} rounds x {args.forwards} forwards, swap io layers: {args.swap_io}")
    stats = {n: {"times": []} for n in settings}
    for _ in range(args.rounds):
        for n in settings:
            time_setting(model, inputs, device, n, args, stats[n])
    report(settings, stats, layers, device)


if __name__ == "__main__":
    main()
