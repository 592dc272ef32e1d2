"""Peak extra host memory and run time of each colour-fix method, as ratios, measured side by side.

Each measurement runs in a fresh subprocess: the inputs are made, the kernel's peak-RSS mark is reset
(/proc/self/clear_refs, Linux), color_fix runs, and the peak above the inputs is divided by the size of
one input tensor (the output itself accounts for 1.0). "whole" runs every frame in one chunk, so its
figure minus 1 is the scratch in copies of a chunk; "chunked" uses the default chunk size.

    PYTHONPATH=. python benchmarks/color_fix_memory.py [--frames 8 --height 1080 --width 1920]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

METHODS = ("wavelet", "adain", "lab", "hsv")

CHILD = r"""
import json, sys, time
import torch
from seedvr2_core.color import DEFAULT_CHUNK_PIXELS, color_fix

def rss_kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])

method, chunked, n, h, w = sys.argv[1], sys.argv[2] == "1", *map(int, sys.argv[3:6])
torch.set_num_threads(1)
gen = torch.Generator().manual_seed(0)
content = torch.rand(n, 3, h, w, generator=gen) * 2 - 1
reference = torch.rand(n, 3, h, w, generator=gen) * 2 - 1
color_fix(content[:1, :, :64, :64], reference[:1, :, :64, :64], method)  # load kernels before measuring
base = rss_kb("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
start = time.perf_counter()
out = color_fix(content, reference, method, chunk_pixels=DEFAULT_CHUNK_PIXELS if chunked else 1 << 62)
seconds = time.perf_counter() - start
peak = rss_kb("VmHWM:")
print(json.dumps({"extra": (peak - base) * 1024 / (content.numel() * 4), "seconds": seconds}))
"""


def measure(method: str, chunked: bool, frames: int, height: int, width: int) -> dict:
    args = [sys.executable, "-c", CHILD, method, "1" if chunked else "0", str(frames), str(height), str(width)]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--repeats", type=int, default=2)
    opts = parser.parse_args()
    size_mb = opts.frames * 3 * opts.height * opts.width * 4 / 2**20
    print(f"{opts.frames} frames {opts.width}x{opts.height}, one float32 input = {size_mb:.0f} MiB, 1 thread")
    rows = {}
    for _ in range(opts.repeats):  # interleaved, so machine load hits every method alike
        for method in METHODS:
            for chunked in (False, True):
                result = measure(method, chunked, opts.frames, opts.height, opts.width)
                best = rows.setdefault((method, chunked), result)
                best["extra"] = min(best["extra"], result["extra"])
                best["seconds"] = min(best["seconds"], result["seconds"])
    base_time = rows[("wavelet", True)]["seconds"]
    print("method   | peak extra / input, whole | chunked | time / wavelet chunked")
    for method in METHODS:
        whole, chunked = rows[(method, False)], rows[(method, True)]
        print(f"{method:8} | {whole['extra']:25.2f} | {chunked['extra']:7.2f} | {chunked['seconds'] / base_time:6.2f}")


if __name__ == "__main__":
    main()
