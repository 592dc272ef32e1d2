"""Memory plan: estimated against measured peak memory, as ratios, side by side in one run.

Measured bytes are those the device allocator holds (what the plan estimates): on CUDA
`torch.cuda.max_memory_allocated`, on the CPU the running sum of PyTorch's allocations and frees seen by
its profiler (`seedvr2_core.memtrack.tracked_peak`). Models use random weights in the official layout.

CPU parts (`--part`, default all but cuda):
  dit       real-width DiT (reduced depth) forwards: working-set estimate / measured, per latent size
  vae       real-width VAE encode / decode per tiling: estimate / measured
  color     colour-fix scratch per method, in float32 copies of a chunk (memory.COLOR_SCRATCH)
  pipeline  the acceptance: whole `restore_stream` runs under a planned Runtime at three sizes:
            plan estimate / (weights + tracked peak); peak RSS growth for context
  table     no measurement: the plans chosen for common GPUs, sizes and weight formats (README table)
GPU (`--device cuda`): the GPU acceptance: SeedVR2-3B random weights in fp16, fp8 and Q4_K, 21 frames of
1080p, 8 GiB budget, all blocks swapped, auto VAE tiling: peak VRAM per phase against the estimate, and
the DiT step's time with all blocks swapped over the resident one.

    PYTHONPATH=. python benchmarks/memory_plan.py --part pipeline
    PYTHONPATH=. python benchmarks/memory_plan.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seedvr2_core import (  # noqa: E402
    NaDiT, RestoreOptions, VAETiling, VideoAutoencoder, load_dit, make_dit_config, make_vae_config, restore_stream,
)
from seedvr2_core.color import DEFAULT_CHUNK_PIXELS, color_fix  # noqa: E402
from seedvr2_core.memory import COLOR_SCRATCH, dit_working_set, module_bytes, vae_working_set  # noqa: E402
from seedvr2_core.memory_options import MemoryOptions, format_bytes  # noqa: E402
from seedvr2_core.memtrack import tracked_peak  # noqa: E402
from seedvr2_core.random_weights import random_state_dict  # noqa: E402
from seedvr2_core.runtime import Runtime  # noqa: E402
from seedvr2_core.vae import init_random_  # noqa: E402

GiB = 1 << 30


def rss(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # Linux: the peak-RSS mark (VmHWM) restarts from the current RSS


def make_dit(variant: str, layers: int | None, dtype: torch.dtype, device: str = "cpu") -> NaDiT:
    base = make_dit_config(variant)
    overrides = {} if layers is None else {"num_layers": layers, "mm_layers": min(base.mm_layers, max(1, layers // 2))}
    cfg = make_dit_config(variant, overrides)
    with torch.device("meta"):
        meta = NaDiT(cfg)
    state = random_state_dict(meta, seed=0, dtype=dtype)
    return load_dit(state, config=cfg, dtype=dtype, device=device)


def make_vae(dtype: torch.dtype) -> VideoAutoencoder:
    with torch.device("meta"):
        vae = VideoAutoencoder(make_vae_config({}))
    vae = vae.to_empty(device="cpu")
    init_random_(vae, torch.Generator().manual_seed(0))
    vae.requires_grad_(False).to(dtype)
    vae.compute_dtype = dtype
    return vae


def random_frames(n: int, h: int, w: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(n * h + w)
    return list((torch.rand(n, h, w, 3, generator=g) * 255).to(torch.uint8))


# -- CPU parts ---------------------------------------------------------------------------------------------


def part_dit(args) -> None:
    dtype = getattr(torch, args.dtype)
    model = make_dit(args.variant, args.layers, dtype)
    print(f"DiT {args.variant} width {model.config.vid_dim}, {len(model.blocks)} blocks, {dtype}, {torch.get_num_threads()} threads")
    print(f"{'latent':>14} {'tokens':>7} {'estimate':>10} {'measured':>10} {'ratio':>6}")
    for latent in [(2, 32, 56), (3, 44, 80), (5, 68, 120)]:
        t, h, w = latent
        g = torch.Generator().manual_seed(0)
        inputs = (torch.randn(t * h * w, 33, generator=g), torch.randn(58, model.config.txt_in_dim, generator=g),
                  torch.tensor([[t, h, w]]), torch.tensor([[58]]), torch.tensor([1000.0]))
        with torch.inference_mode():
            model(*inputs)
            with tracked_peak() as reading:
                model(*inputs)
        est = dit_working_set(model.config, latent, 58, dtype, "cpu")
        print(f"{str(latent):>14} {t * h * w // 4:7d} {format_bytes(est):>10} {format_bytes(reading.peak):>10} {est / reading.peak:6.3f}")


def part_vae(args) -> None:
    dtype = getattr(torch, args.dtype)
    vae = make_vae(dtype)
    print(f"VAE (official widths), {dtype}; estimate / measured per call")
    print(f"{'op':>7} {'frames x size':>16} {'tiling':>18} {'estimate':>10} {'measured':>10} {'ratio':>6}")
    tilings = [VAETiling(), VAETiling(tile_size=128, mode="frame"), VAETiling(tile_size=128, mode="tile")]
    for frames, h, w in [(5, 128, 192), (5, 192, 320)]:
        for tiling in tilings:
            for op in ("encode", "decode"):
                g = torch.Generator().manual_seed(1)
                if op == "encode":
                    x = (torch.rand(1, 3, frames, h, w, generator=g) * 2 - 1).to(dtype)
                    call = lambda: vae.encode(x, tiling=tiling)  # noqa: E731
                else:
                    x = torch.randn(1, 16, (frames - 1) // 4 + 1, h // 8, w // 8, generator=g)
                    call = lambda: vae.decode(x, tiling=tiling)  # noqa: E731
                with tracked_peak() as reading:
                    out = call()
                del out
                est = vae_working_set(vae, op, frames, h, w, tiling, dtype, "cpu") - (x.nbytes if op == "encode" else 0)
                name = "whole" if tiling.tile_size is None else f"{tiling.resolved_mode} {tiling.tile_size}"
                print(f"{op:>7} {f'{frames}x{h}x{w}':>16} {name:>18} {format_bytes(est):>10} "
                      f"{format_bytes(reading.peak):>10} {est / reading.peak:6.3f}")


def part_color(args) -> None:
    h, w = 1080, 1920
    frames = max(1, DEFAULT_CHUNK_PIXELS // (h * w))  # one chunk
    g = torch.Generator().manual_seed(0)
    content = torch.rand(frames, 3, h, w, generator=g) * 2 - 1
    reference = torch.rand(frames, 3, h, w, generator=g) * 2 - 1
    chunk = content.nbytes
    print(f"colour fix on {frames} frames of {w}x{h} (one chunk), in place: scratch in float32 copies of the chunk")
    print(f"{'method':>8} {'measured':>9} {'COLOR_SCRATCH':>14}")
    for method in ("wavelet", "adain", "lab", "hsv"):
        color_fix(content[:, :, :64, :64], reference[:, :, :64, :64], method)  # load kernels first
        work = content.clone()
        with tracked_peak() as reading:
            color_fix(work, reference, method, out=work)
        print(f"{method:>8} {reading.peak / chunk:9.2f} {COLOR_SCRATCH[method]:14.1f}")


def run_pipeline(dit, vae, text, size, memory: MemoryOptions) -> tuple[Runtime, float]:
    frames, h, w = size
    runtime = Runtime(dit, vae, "cpu", memory)
    start = time.perf_counter()
    for _ in restore_stream(random_frames(frames, h, w), dit, vae, text, RestoreOptions(batch_size=frames, overlap=0),
                            runtime=runtime):
        pass
    return runtime, time.perf_counter() - start


def child_rss(args) -> None:
    """In a fresh process: peak RSS growth of one run above the loaded models (JSON on stdout)."""
    import gc
    import json

    from seedvr2_core.vae.tensors import release_free_memory

    dtype = getattr(torch, args.dtype)
    dit, vae = make_dit(args.variant, args.layers, dtype), make_vae(dtype)
    text = torch.randn(58, dit.config.txt_in_dim)
    gc.collect()
    release_free_memory()  # the heap's cached free pages would otherwise hide the run's growth
    before = rss("VmRSS")
    reset_peak_rss()
    run_pipeline(dit, vae, text, args.sizes[0], MemoryOptions())
    print(json.dumps({"growth": rss("VmHWM") - before}))


def rss_growth(args, size) -> int:
    import json
    import subprocess

    command = [sys.executable, __file__, "--child-rss", "--sizes", "x".join(map(str, size)), "--variant", args.variant,
               "--layers", str(args.layers), "--dtype", args.dtype] + (["--threads", str(args.threads)] if args.threads else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["growth"]


def part_pipeline(args) -> None:
    dtype = getattr(torch, args.dtype)
    dit = make_dit(args.variant, args.layers, dtype)
    vae = make_vae(dtype)
    text = torch.randn(58, dit.config.txt_in_dim)
    weights = module_bytes(dit) + module_bytes(vae)
    print(f"CPU pipeline: {args.variant} width {dit.config.vid_dim} with {len(dit.blocks)} blocks + official VAE, "
          f"{dtype}, random weights ({format_bytes(weights)}), {torch.get_num_threads()} threads. Peak = weights + tracked "
          "peak; 'work' = the same without the weights; RSS = weights + peak RSS growth of the run in a fresh process")
    print(f"{'frames x size':>14} {'plan (worst phase, VAE)':>34} {'estimate':>9} {'measured':>9} {'ratio':>6} "
          f"{'work':>6} {'RSS':>9} {'ratio':>6} {'s':>5}")
    cases = [(size, MemoryOptions()) for size in args.sizes]
    cases.append((args.sizes[-1], MemoryOptions(vae_tile=VAETiling(tile_size=128, mode="tile"))))
    for size, memory in cases:
        with tracked_peak() as reading:
            runtime, seconds = run_pipeline(dit, vae, text, size, memory)
        measured = weights + reading.peak
        plan = runtime.plan
        worst = max(plan.phases, key=lambda p: p.total).name
        tiling = plan.vae_tiling
        knobs = f"{worst}, " + ("whole frames" if tiling.tile_size is None else f"{tiling.resolved_mode} {tiling.tile_size}")
        grown = weights + rss_growth(args, size) if memory.vae_tile == "auto" else None
        print(f"{'x'.join(map(str, size)):>14} {knobs:>34} {format_bytes(plan.peak):>9} {format_bytes(measured):>9} "
              f"{plan.peak / measured:6.3f} {(plan.peak - weights) / reading.peak:6.3f} "
              + (f"{format_bytes(grown):>9} {plan.peak / grown:6.3f}" if grown else f"{'':>9} {'':>6}") + f" {seconds:5.0f}")
        for phase in plan.phases:
            print(f"{'':>16}{phase.name:>11}: {format_bytes(phase.total):>9}  "
                  + ", ".join(f"{k} {format_bytes(v)}" for k, v in phase.parts.items()))


def part_table(args) -> None:
    from seedvr2_core.memory import dit_weights_for, vae_bytes_for
    from seedvr2_core.memory_plan import PlanModels, PlanSearch, Target, Workload

    with torch.device("meta"):
        vae = VideoAutoencoder(make_vae_config({}))
    half = torch.float16
    print("| model | weights | output | budget | plan | estimated peak |")
    print("|---|---|---|---|---|---|")
    for variant in ("seedvr2-3b", "seedvr2-7b"):
        cfg = make_dit_config(variant)
        for fmt in ("float16", "fp8", "Q4_K"):
            models = PlanModels(cfg, dit_weights_for(cfg, fmt, half), half, vae, vae_bytes_for(vae, half), half)
            for name, (h, w) in (("720p", (720, 1280)), ("1080p", (1088, 1920))):
                for budget in (6, 8, 12, 16, 24):
                    search = PlanSearch(models, Workload(h, w), Target("cuda", True, budget * GiB))
                    plan = search.first_fit(MemoryOptions(), 21)
                    text = "does not fit" if plan is None else plan.knobs().replace("DiT and VAE ", "")
                    peak = "" if plan is None else format_bytes(plan.peak)
                    print(f"| {variant[-2:].upper()} | {fmt} | {name}, 21 frames | {budget} GiB | {text} | {peak} |")


# -- the GPU acceptance -------------------------------------------------------------------------------------


def quantise_(dit: NaDiT, fmt: str) -> None:
    """Store the DiT's matrices as fp8 or Q4_K (GGUF blocks), as the converter would (vectors stay float32)."""
    from seedvr2_core.weights.qtensor import QuantizedTensor
    from seedvr2_core.weights.quantize import quantize_q4_k

    for module in dit.modules():
        w = module._parameters.get("weight")
        if w is None or w.ndim != 2:
            continue
        if fmt == "fp8":
            stored = w.detach().to(torch.float8_e4m3fn)
        elif w.shape[-1] % 256 == 0:
            stored = QuantizedTensor(quantize_q4_k(w.detach().float().cuda()).cpu(), "Q4_K", w.shape)
        else:
            continue  # rows not a whole number of Q4_K blocks: kept in float16, like the converter's fallback
        module._parameters["weight"] = torch.nn.Parameter(stored, requires_grad=False)


def cuda_timed(fn, device) -> tuple[float, object]:
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def part_cuda(args) -> None:
    device = torch.device("cuda")
    frames = random_frames(args.frames, args.height, args.width)
    vae = make_vae(torch.float16)
    print(f"{torch.cuda.get_device_name(device)}: SeedVR2-3B random weights, {args.frames} frames of "
          f"{args.width}x{args.height}, budget {format_bytes(args.budget)}, VAE fp16")
    for fmt in args.formats:
        dit = make_dit("seedvr2-3b", None, torch.float16)
        if fmt != "fp16":
            quantise_(dit, fmt)
        text = torch.randn(58, dit.config.txt_in_dim)
        swapped = Runtime(dit, vae, device, MemoryOptions(budget=args.budget, blocks_to_swap="all"))
        opts = RestoreOptions(batch_size=args.frames, overlap=0)
        with tracked_peak(device) as reading, swapped:
            for _ in restore_stream(frames, dit, vae, text, opts, runtime=swapped):
                pass
        plan = swapped.plan
        print(f"[{fmt}] {plan.describe()}")
        print(f"[{fmt}] peak VRAM {format_bytes(reading.peak)} (<= {format_bytes(args.budget)}: "
              f"{'yes' if reading.peak <= args.budget else 'NO'}), estimate / measured {plan.peak / reading.peak:.3f}")
        for name, measured in swapped.measured.items():
            est = plan.phase({"sample": "DiT step"}.get(name, name)).total
            print(f"[{fmt}]   {name:>7}: measured {format_bytes(measured)}, estimate {format_bytes(est)}, ratio {est / measured:.3f}")
        dit_step_overhead(dit, vae, text, frames, plan, device, fmt, args)


def dit_step_overhead(dit, vae, text, frames, plan, device, fmt, args) -> None:
    """Time the DiT step with every block swapped and with the DiT resident, in interleaved rounds."""
    from seedvr2_core.noise import SeededNoise
    from seedvr2_core.pipeline import as_frame_tensor
    from seedvr2_core.sizing import SizeRequest, plan_size
    from seedvr2_core.transforms import frames_to_model, pad_frames_4n1

    size = plan_size(SizeRequest(), args.height, args.width)
    video = pad_frames_4n1(frames_to_model(as_frame_tensor(frames), size))
    noise = SeededNoise(666)
    settings = {"resident": MemoryOptions(budget=70 * GiB, blocks_to_swap=0, vae_tile=plan.vae_tiling),
                "all swapped": MemoryOptions(budget=args.budget, blocks_to_swap="all", vae_tile=plan.vae_tiling)}
    times = {name: [] for name in settings}
    cond = None
    for _ in range(args.rounds):
        for name, memory in settings.items():
            with Runtime(dit, vae, device, memory) as runtime:
                runtime.prepare(*size.padded_hw, args.frames, len(text))
                cond = runtime.encode(video, 0, noise) if cond is None else cond
                runtime.sample(cond, 0, noise, text)  # warm-up
                times[name].append(cuda_timed(lambda: runtime.sample(cond, 0, noise, text), device)[0])
    resident, swapped = (statistics.median(times[n]) for n in settings)
    print(f"[{fmt}] DiT step: resident {resident:.2f} s, all blocks swapped {swapped:.2f} s, overhead {swapped / resident - 1:+.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--part", choices=["dit", "vae", "color", "pipeline", "table"], action="append")
    ap.add_argument("--variant", default="seedvr2-3b")
    ap.add_argument("--layers", type=int, default=2, help="DiT depth on the CPU (real width)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--sizes", default="5x128x192,5x160x256,5x192x320", help="pipeline: frames x height x width, ...")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--frames", type=int, default=21)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--budget", default="8GiB")
    ap.add_argument("--formats", default="fp16,fp8,Q4_K")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child-rss", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from seedvr2_core.memory_options import parse_budget

    args.budget = parse_budget(args.budget)
    args.formats = args.formats.split(",")
    args.sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_rss:
        child_rss(args)
        return
    if args.device == "cuda":
        part_cuda(args)
        return
    for part in args.part or ["dit", "vae", "color", "pipeline"]:
        parts = {"dit": part_dit, "vae": part_vae, "color": part_color, "pipeline": part_pipeline, "table": part_table}
        parts[part](args)
        print()


if __name__ == "__main__":
    main()
