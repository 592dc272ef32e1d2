"""CPU attention at window lengths: as given, and padded to `attention.dense_length` with the keys masked.

PyTorch's CPU flash-attention kernel works in query blocks of 32 or 64 rows and key blocks of up to 512;
this prints, for each sequence length, the time of one batched call at that length and at the padded
length the DiT uses (same q, k, v; the padding rows masked out as keys), interleaved round by round, and
their ratio (below 1: padding is faster). FLOP/s count the unpadded work only.
Usage: python benchmarks/cpu_attention.py [--dtype bfloat16] [--lengths 122,186,250,378,500,700,1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seedvr2_core.attention import dense_length, key_padding_mask  # noqa: E402


def timed(fn, repeats: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--lengths", default="122,186,250,310,378,500,700,1000")
    ap.add_argument("--heads", type=int, default=20, help="3B: 20 heads of 128")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    dtype, heads, dim = getattr(torch, args.dtype), args.heads, 128
    print(f"{args.dtype}, {heads} heads of {dim}, {torch.get_num_threads()} threads")
    print(f"{'tokens':>6} {'padded':>6} {'windows':>7} {'as given':>15} {'padded':>15} {'time ratio':>10}")
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for length in (int(x) for x in args.lengths.split(",")):
            padded = dense_length(length, "cpu")
            windows = max(1, 400 // length)  # about the 3B's 5x16x16 latent per call
            q, k, v = (torch.randn(windows, heads, padded, dim, generator=g).to(dtype) for _ in range(3))
            mask = key_padding_mask(length, padded, "cpu")
            plain = lambda: F.scaled_dot_product_attention(q[:, :, :length], k[:, :, :length], v[:, :, :length])  # noqa: E731
            pad = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # noqa: E731
            repeats = max(2, int(4e6 // (length * length * windows)))
            plain(), pad()
            a, b = [], []
            for _ in range(args.rounds):
                a.append(timed(plain, repeats))
                b.append(timed(pad, repeats))
            ta, tb = statistics.median(a), statistics.median(b)
            flops = 4 * windows * heads * length * length * dim
            print(f"{length:6d} {padded:6d} {windows:7d} {flops / ta / 1e9:9.0f} GF/s {flops / tb / 1e9:9.0f} GF/s "
                  f"{tb / ta:10.2f}")


if __name__ == "__main__":
    main()
