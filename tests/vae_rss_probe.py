"""Run one VAE call in a fresh process and print its peak memory (JSON); used by the tests and benchmarks.

usage: python vae_rss_probe.py '{"op": "decode", "size": [1, 21, 8, 8], "channels": [32, 64, 64, 64], ...}'
Peak = the process's peak RSS during the call minus its RSS just before it (model built, input allocated);
the peak is reset before the call (Linux `/proc/self/clear_refs`), so building the model does not count.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402
import torch  # noqa: E402

from seedvr2_core import VAETiling, VideoAutoencoder, estimate_vae_cost, make_vae_config  # noqa: E402
from seedvr2_core.vae import init_random_  # noqa: E402
from seedvr2_core.vae.tensors import release_free_memory  # noqa: E402


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak RSS (VmHWM) to the current RSS


def peak_rss() -> int:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def main(spec: dict) -> dict:
    torch.set_num_threads(spec.get("threads", torch.get_num_threads()))
    dtype = getattr(torch, spec.get("dtype", "float32"))
    overrides = {"block_out_channels": spec["channels"], "norm_num_groups": spec.get("groups", 32)} \
        if "channels" in spec else {}
    with torch.device("meta"):
        vae = VideoAutoencoder(make_vae_config(overrides))
    vae = vae.to_empty(device="cpu")
    init_random_(vae, torch.Generator().manual_seed(0))
    vae.requires_grad_(False).to(dtype)
    vae.compute_dtype = dtype
    tiling = VAETiling(**spec.get("tiling", {}))
    b, t, h, w = spec["size"]
    g = torch.Generator().manual_seed(1)
    if spec["op"] == "encode":
        x = (torch.rand(b, 3, t, h, w, generator=g) * 2 - 1).to(dtype)
        call = lambda: vae.encode(x, tiling=tiling)  # noqa: E731
    else:
        x = torch.randn(b, vae.config.latent_channels, t, h, w, generator=g).to(dtype)
        call = lambda: vae.decode(x, tiling=tiling)  # noqa: E731
    gc.collect()
    release_free_memory()  # the call trims the heap too: freed setup memory must not lower its floor
    base = psutil.Process().memory_info().rss
    reset_peak()
    start = time.perf_counter()
    out = call()
    seconds = time.perf_counter() - start
    peak = peak_rss()
    flops, estimated = estimate_vae_cost(vae, spec["op"], (b, t, h, w), tiling, dtype)
    return {"peak_bytes": peak - base, "estimated_bytes": estimated, "seconds": seconds, "flops": flops,
            "out_shape": list(out.shape)}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
