"""VAE benchmark: FLOP/s against a plain conv, streaming and tiling accuracy, peak memory and time ratios.

Random weights of the official widths (the real checkpoint is not needed for speed or memory); every
figure is measured side by side in one run and printed as a ratio. Sections (``--only a,b``):

* flops:  untiled encode / decode of 5 x 128 x 128 in float32 and bfloat16, GFLOP/s (executed FLOPs from
          the cost model; the official computation's count in brackets) next to plain 3x3x3 convs of the
          VAE's channel widths, in interleaved rounds (medians).
* stream: decode of 21 latent frames (81 frames) in chunks vs the whole clip: max error; peak RSS for 81
          vs 9 output frames, each in a fresh process; the cost model's estimate next to each peak.
* tiling: encode and decode of 256 x 384 real video frames (../shared/media) with tiles of 128: max error
          and PSNR against untiled, for whole-frame statistics (mode "frame") and per-tile statistics
          (mode "tile").
* big:    decode of one 1024 x 1024 frame: peak RSS and time of tiled (modes "frame" and "tile") vs untiled,
          each in a fresh process.

    python benchmarks/vae.py                  # everything, about 10-20 minutes on 2 CPU cores
    python benchmarks/vae.py --only flops --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seedvr2_core import VAEConfig, VAETiling, VideoAutoencoder, estimate_vae_cost  # noqa: E402
from seedvr2_core.vae import init_random_  # noqa: E402
from seedvr2_core.vae.tensors import CL3D, conv3d  # noqa: E402

PROBE = ROOT / "tests" / "vae_rss_probe.py"
MEDIA = ROOT.parent / "shared" / "media" / "Mustache_640x360.mp4"
MIB = 2**20


def real_vae(dtype: torch.dtype) -> VideoAutoencoder:
    with torch.device("meta"):
        vae = VideoAutoencoder(VAEConfig())
    vae = vae.to_empty(device="cpu")
    init_random_(vae, torch.Generator().manual_seed(0))
    vae.requires_grad_(False).to(dtype)
    vae.compute_dtype = dtype
    return vae


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def load_note() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} CPUs"


# -- flops ----------------------------------------------------------------------------------------------

PLAIN_CONVS = ((128, 128), (256, 64), (512, 32))  # (channels, side) as in the decoder at 128 x 128 output


def bench_flops(rounds: int) -> None:
    print(f"\n== FLOP/s, untiled 5 x 128 x 128 ({load_note()})")
    for dtype in (torch.float32, torch.bfloat16):
        vae = real_vae(dtype)
        video = (torch.rand(1, 3, 5, 128, 128) * 2 - 1).to(dtype)
        latent = torch.randn(1, 16, 2, 16, 16).to(dtype)
        cases = {
            "encode": (lambda: vae.encode(video), estimate_vae_cost(vae, "encode", (1, 5, 128, 128), dtype=dtype)[0],
                       estimate_vae_cost(vae, "encode", (1, 5, 128, 128), VAETiling(chunk_size=None), dtype)[0]),
            "decode": (lambda: vae.decode(latent), estimate_vae_cost(vae, "decode", (1, 2, 16, 16), dtype=dtype)[0],
                       estimate_vae_cost(vae, "decode", (1, 2, 16, 16), VAETiling(chunk_size=None), dtype)[0]),
        }
        for c, side in PLAIN_CONVS:
            x = torch.randn(1, c, 7, side + 2, side + 2).to(dtype).contiguous(memory_format=CL3D)
            w = (torch.randn(c, c, 3, 3, 3) / (27 * c) ** 0.5).to(dtype)
            cases[f"conv3d {c}ch {side}x{side}"] = ((lambda x=x, w=w: conv3d(x, w, None)), 2 * c * c * 27 * 5 * side * side, None)
        times = {name: [] for name in cases}
        for fn, _, _ in cases.values():
            fn()  # warm-up: oneDNN kernels, allocator
        for _ in range(rounds):
            for name, (fn, _, _) in cases.items():
                times[name].append(timed(fn))
        conv_rates = []
        for name, (_, flops, nominal) in cases.items():
            t = statistics.median(times[name])
            rate = flops / t / 1e9
            extra = f"  (official count {nominal / t / 1e9:.0f})" if nominal else ""
            print(f"  {str(dtype)[6:]:9s} {name:22s} median {t:7.3f} s {rate:6.0f} GFLOP/s{extra}, "
                  f"best {flops / min(times[name]) / 1e9:.0f}  [rounds: {', '.join(f'{x:.2f}' for x in times[name])}]")
            if name.startswith("conv3d"):
                conv_rates.append(rate)
        for op in ("encode", "decode"):
            rate = cases[op][1] / statistics.median(times[op]) / 1e9
            print(f"  {str(dtype)[6:]:9s} {op} / mean plain conv = {rate / statistics.mean(conv_rates):.2f}")
        del vae


# -- stream ---------------------------------------------------------------------------------------------

def probe(spec: dict) -> dict:
    done = subprocess.run([sys.executable, str(PROBE), json.dumps(spec)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"probe {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def show_probe(label: str, r: dict, base: dict | None = None) -> None:
    ratio = f"  {r['peak_bytes'] / base['peak_bytes']:.2f}x peak, {r['seconds'] / base['seconds']:.2f}x time" if base else ""
    print(f"  {label:34s} peak {r['peak_bytes'] / MIB:7.0f} MiB (estimate {r['estimated_bytes'] / MIB:6.0f}, "
          f"{r['estimated_bytes'] / r['peak_bytes']:.2f}x)  {r['seconds']:6.1f} s{ratio}")


def bench_stream(latent_side: int) -> None:
    print(f"\n== Streaming, real widths, float32, {8 * latent_side} x {8 * latent_side} ({load_note()})")
    vae = real_vae(torch.float32)
    latent = torch.randn(1, 16, 21, latent_side, latent_side, generator=torch.Generator().manual_seed(0))
    t_chunk = timed(lambda: globals().__setitem__("_chunked", vae.decode(latent, tiling=VAETiling(chunk_size=1))))
    t_whole = timed(lambda: globals().__setitem__("_whole", vae.decode(latent, tiling=VAETiling(chunk_size=None))))
    chunked, whole = globals().pop("_chunked"), globals().pop("_whole")
    err = (chunked - whole).abs().max().item()
    print(f"  21 latent frames -> {tuple(chunked.shape)}: chunks of 1 vs whole clip max abs error {err:.2e} "
          f"(output range {whole.min().item():.2f}..{whole.max().item():.2f}); time chunked / whole = {t_chunk / t_whole:.2f}")
    del vae, chunked, whole
    size = lambda t: [1, t, latent_side, latent_side]  # noqa: E731
    short = probe({"op": "decode", "size": size(3), "tiling": {"chunk_size": 1}})
    long_ = probe({"op": "decode", "size": size(21), "tiling": {"chunk_size": 1}})
    whole = probe({"op": "decode", "size": size(21), "tiling": {"chunk_size": None}})
    show_probe("9 frames, chunks of 1", short)
    show_probe("81 frames, chunks of 1", long_, short)
    show_probe("81 frames, whole clip", whole, short)


# -- tiling ---------------------------------------------------------------------------------------------

def media_video(frames: int, height: int, width: int) -> torch.Tensor:
    """(1, 3, frames, height, width) in [-1, 1] from the sample clip (centre crop), or smooth noise."""
    try:
        import av

        with av.open(str(MEDIA)) as c:
            rgb = [f.to_ndarray(format="rgb24") for _, f in zip(range(frames), c.decode(video=0))]
        x = torch.from_numpy(__import__("numpy").stack(rgb)).permute(3, 0, 1, 2).float() / 127.5 - 1
        top, left = (x.shape[2] - height) // 2, (x.shape[3] - width) // 2
        return x[None, :, :, top:top + height, left:left + width].contiguous()
    except (ImportError, OSError, StopIteration) as e:
        print(f"  (sample clip unavailable: {e}; using smooth noise)")
        g = torch.Generator().manual_seed(0)
        coarse = torch.rand(1, 3, frames, height // 16, width // 16, generator=g) * 2 - 1
        return torch.nn.functional.interpolate(coarse, size=(frames, height, width), mode="trilinear")


def compare(a: torch.Tensor, ref: torch.Tensor) -> str:
    span = (ref.max() - ref.min()).item()
    mse = (a.double() - ref.double()).square().mean().item()
    psnr = float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(span * span / mse)).item()
    return f"max abs {(a - ref).abs().max().item():.2e}  PSNR {psnr:6.1f} dB"


def bench_tiling(frames: int, tile: int, overlap: int) -> None:
    print(f"\n== Tiling, real widths, float32, {frames} x 256 x 384 real frames, tiles of {tile} ({load_note()})")
    vae = real_vae(torch.float32)
    video = media_video(frames, 256, 384)
    plans = {"frame (whole-frame statistics)": VAETiling(tile_size=tile, mode="frame"),
             f"tile (per-tile statistics, overlap {overlap})": VAETiling(tile_size=tile, tile_overlap=overlap, mode="tile")}
    start = time.perf_counter()
    latent = vae.encode(video)
    t_enc = time.perf_counter() - start
    start = time.perf_counter()
    decoded = vae.decode(latent)
    t_dec = time.perf_counter() - start
    print(f"  untiled: encode {t_enc:.1f} s, decode {t_dec:.1f} s (decoded output range "
          f"{decoded.min().item():.2f}..{decoded.max().item():.2f}; PSNR uses each reference's range)")
    for name, plan in plans.items():
        start = time.perf_counter()
        lat = vae.encode(video, tiling=plan)
        te = time.perf_counter() - start
        start = time.perf_counter()
        dec = vae.decode(latent, tiling=plan)
        td = time.perf_counter() - start
        print(f"  {name}:\n    encode {compare(lat, latent)}  time {te / t_enc:.2f}x"
              f"\n    decode {compare(dec, decoded)}  time {td / t_dec:.2f}x")


# -- big ------------------------------------------------------------------------------------------------

def bench_big(dtype: str, tile: int, tile_mode_size: int) -> None:
    print(f"\n== Decode of one 1024 x 1024 frame, real widths, {dtype} ({load_note()})")
    size = [1, 1, 128, 128]
    untiled = probe({"op": "decode", "size": size, "dtype": dtype})
    frame = probe({"op": "decode", "size": size, "dtype": dtype, "tiling": {"tile_size": tile, "mode": "frame"}})
    tiles = probe({"op": "decode", "size": size, "dtype": dtype,
                   "tiling": {"tile_size": tile_mode_size, "mode": "tile"}})
    show_probe("untiled", untiled)
    show_probe(f"mode frame, tiles of {tile}", frame, untiled)
    show_probe(f"mode tile, tiles of {tile_mode_size}", tiles, untiled)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="flops,stream,tiling,big")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    ap.add_argument("--stream-latent", type=int, default=8, help="latent side of the streaming test (8: 64 px)")
    ap.add_argument("--tiling-frames", type=int, default=5)
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--overlap", type=int, default=32, help="mode tile overlap in pixels")
    ap.add_argument("--big-dtype", default="bfloat16", choices=["float32", "bfloat16"])
    ap.add_argument("--big-tile-mode-size", type=int, default=512)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    only = set(args.only.split(","))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, oneDNN {torch.backends.mkldnn.is_available()}")
    if "flops" in only:
        bench_flops(args.rounds)
    if "stream" in only:
        bench_stream(args.stream_latent)
    if "tiling" in only:
        bench_tiling(args.tiling_frames, args.tile, args.overlap)
    if "big" in only:
        bench_big(args.big_dtype, args.tile, args.big_tile_mode_size)


if __name__ == "__main__":
    main()
