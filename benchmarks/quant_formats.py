"""Weight formats side by side: memory held, per-layer decode cost, and GGUF header parsing.

    PYTHONPATH=. python benchmarks/quant_formats.py [--device cuda] [--tokens 1024]

1. One SeedVR2-3B MLP matrix (6912 x 2560) stored as fp32 / bf16 / fp8 / Q8_0 / Q4_K: bytes held,
   and the time of `Linear` (decode + matmul, as `ops.Linear` runs it) as a ratio to the fp32 layer,
   measured interleaved in one process (median of repeats).
2. Parsing a GGUF header that carries a 1M-element metadata array: our bounded walk against
   `gguf.GGUFReader`, peak Python allocations (tracemalloc) as a multiple of the file size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import tracemalloc

import numpy as np
import torch

from seedvr2_core.ops import Linear
from seedvr2_core.weights.qtensor import QuantizedTensor
from seedvr2_core.weights.quantize import quantize_q4_k, quantize_q8_0


def stored_weights(w: torch.Tensor, device: str) -> dict[str, torch.Tensor]:
    return {
        "fp32": w.to(device),
        "bf16": w.bfloat16().to(device),
        "fp8_e4m3fn": w.to(torch.float8_e4m3fn).to(device),
        "q8_0": QuantizedTensor(quantize_q8_0(w), "Q8_0", w.shape).to(device),
        "q4_k": QuantizedTensor(quantize_q4_k(w), "Q4_K", w.shape).to(device),
    }


def layer_with(weight: torch.Tensor) -> Linear:
    out_features, in_features = getattr(weight, "logical_shape", weight.shape)
    layer = Linear(in_features, out_features, bias=False, device="meta")
    layer._parameters["weight"] = torch.nn.Parameter(weight, requires_grad=False)
    return layer


def timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_layers(device: str, tokens: int, repeats: int) -> None:
    w = torch.randn(6912, 2560) / 2560**0.5
    x = torch.randn(tokens, 2560, device=device)
    layers = {name: layer_with(t) for name, t in stored_weights(w, device).items()}
    times: dict[str, list[float]] = {name: [] for name in layers}
    for _ in range(repeats):
        for name, layer in layers.items():  # interleaved, so load changes hit every format alike
            times[name].append(timed(lambda: layer(x), device))
    base = statistics.median(times["fp32"])
    fp32_bytes = w.numel() * 4
    print(f"Linear 2560 -> 6912, {tokens} tokens, fp32 activations, {device}:")
    print(f"{'format':<12}{'bytes / fp32':>14}{'time / fp32 layer':>20}")
    for name, layer in layers.items():
        held = layer.weight.numel() * layer.weight.element_size()
        print(f"{name:<12}{held / fp32_bytes:>14.3f}{statistics.median(times[name]) / base:>20.2f}")


def header_file(path: str, items: int) -> None:
    from gguf import GGUFWriter

    writer = GGUFWriter(path, arch="seedvr2")
    writer.add_key_value("test.big", np.zeros(items, dtype=np.uint8).tolist(), 9, 0)  # ARRAY of UINT8
    writer.add_tensor("w", np.zeros(32, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def peak_allocated(fn) -> int:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def bench_headers(items: int) -> None:
    from gguf import GGUFReader

    from seedvr2_core.weights.gguf_header import read_gguf_header

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "big_metadata.gguf")
        header_file(path, items)
        size = os.path.getsize(path)
        ours = peak_allocated(lambda: read_gguf_header(path))
        t_ours = timed(lambda: read_gguf_header(path), "cpu")
        theirs = peak_allocated(lambda: GGUFReader(path))
        t_theirs = timed(lambda: GGUFReader(path), "cpu")
    print(f"GGUF header with a {items}-item metadata array ({size} bytes):")
    print(f"  ours: peak {ours / size:.2f} x file size, {t_ours * 1e3:.1f} ms")
    print(f"  gguf.GGUFReader: peak {theirs / size:.1f} x file size, {t_theirs * 1e3:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--items", type=int, default=1_000_000)
    args = parser.parse_args()
    bench_layers(args.device, args.tokens, args.repeats)
    bench_headers(args.items)


if __name__ == "__main__":
    main()
