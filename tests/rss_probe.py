"""Run as a subprocess: load a checkpoint and print peak RSS growth as JSON (Linux /proc)."""

from __future__ import annotations

import json
import sys

import torch


def rss_bytes(field: str) -> int:
    """VmRSS (current) or VmHWM (peak) of this process in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def main() -> None:
    kind, path, dtype = sys.argv[1], sys.argv[2], getattr(torch, sys.argv[3])
    import seedvr2_core

    loader = {"dit": seedvr2_core.load_dit}[kind]
    before = rss_bytes("VmHWM")
    model = loader(path, dtype=dtype)
    result = {
        "before": before,
        "peak": rss_bytes("VmHWM"),
        "after": rss_bytes("VmRSS"),
        "model_bytes": sum(t.numel() * t.element_size() for t in model.state_dict().values()),
        "num_layers": model.config.num_layers,
        "vid_dim": model.config.vid_dim,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
