"""Real-width SeedVR2-3B blocks in every weight format: file size, bytes held after loading, peak RAM.

    PYTHONPATH=. python benchmarks/load_formats.py [--layers 2] [--formats fp8_e4m3fn,q8_0,q4_k]

Writes a random fp16 checkpoint with the official 3B widths and `--layers` blocks (the first per-stream,
the rest shared), converts it with the converter, then loads each file in a fresh process and reports,
side by side: file size / fp16 file, bytes the loaded model holds / file size, and peak RSS growth
while loading / file size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import torch

from seedvr2_core import NaDiT, make_dit_config
from seedvr2_core.convert import convert_checkpoint
from seedvr2_core.weights.safetensors_file import write_safetensors


def rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def probe(path: str) -> None:
    """Child process: load `path` and print peak RSS growth and the model's bytes as JSON."""
    from seedvr2_core import load_dit

    before = rss("VmHWM")
    model = load_dit(path)
    held = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    print(json.dumps({"growth": rss("VmHWM") - before, "held": held}))


def random_checkpoint(path: str, layers: int) -> None:
    cfg = make_dit_config("seedvr2-3b", {"num_layers": layers, "mm_layers": 1})
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in NaDiT(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(0)

    def produce(key: str) -> torch.Tensor:
        shape = shapes[key]
        scale = 1 / math.sqrt(shape[1]) if len(shape) == 2 else 0.1
        return torch.randn(shape, generator=g) * scale + (1.0 if len(shape) == 1 and "scale" in key else 0.0)

    write_safetensors(path, {k: (torch.float16, s) for k, s in shapes.items()}, produce)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--formats", default="fp8_e4m3fn,q8_0,q4_k")
    parser.add_argument("--probe")
    args = parser.parse_args()
    if args.probe:
        return probe(args.probe)
    with tempfile.TemporaryDirectory() as d:
        fp16 = os.path.join(d, "3b_fp16.safetensors")
        random_checkpoint(fp16, args.layers)
        files = {"fp16": fp16}
        for to in args.formats.split(","):
            files[to] = os.path.join(d, f"3b_{to}." + ("gguf" if to.startswith("q") else "safetensors"))
            start = time.perf_counter()
            convert_checkpoint(fp16, files[to], to)
            print(f"converted to {to} in {time.perf_counter() - start:.1f} s")
        base = os.path.getsize(fp16)
        print(f"3B widths, {args.layers} blocks, fp16 file {base / 2**20:.0f} MiB (loaded as float32 compute dtype)")
        print(f"{'format':<12}{'file / fp16':>12}{'held / file':>13}{'peak RSS growth / file':>24}")
        env = dict(os.environ, PYTHONPATH=os.getcwd())
        for to, path in files.items():
            out = subprocess.run([sys.executable, __file__, "--probe", path], capture_output=True, text=True,
                                 check=True, env=env)
            r = json.loads(out.stdout)
            size = os.path.getsize(path)
            print(f"{to:<12}{size / base:>12.3f}{r['held'] / size:>13.3f}{r['growth'] / size:>24.3f}")


if __name__ == "__main__":
    main()
