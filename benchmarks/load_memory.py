"""Peak RAM while loading a real-size random-weight DiT, as a ratio to the file size.

Writes SeedVR2-3B (or 7B) in the official layout with random fp16 weights (streamed: the writer never
holds the model), then loads it in fresh processes into each requested dtype and prints peak RSS
growth over the file size. Usage:
    python benchmarks/load_memory.py [--variant seedvr2-3b] [--dtypes float16,bfloat16] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from seedvr2_core import NaDiT, make_dit_config  # noqa: E402
from seedvr2_core.random_weights import write_random_checkpoint  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="seedvr2-3b")
    ap.add_argument("--dtypes", default="float16,bfloat16")
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--keep", action="store_true", help="keep the written file")
    args = ap.parse_args()

    with torch.device("meta"):
        model = NaDiT(make_dit_config(args.variant))
    path = Path(args.dir) / f"random_{args.variant}_fp16.safetensors"
    if not path.exists():
        t0 = time.perf_counter()
        write_random_checkpoint(model, path, torch.float16, seed=0)
        print(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t0:.0f} s")
    size = path.stat().st_size
    env = dict(os.environ, PYTHONPATH=str(REPO))
    try:
        for dtype in args.dtypes.split(","):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, str(REPO / "tests" / "rss_probe.py"), "dit", str(path), dtype],
                                 capture_output=True, text=True, check=True, cwd=REPO, env=env)
            r = json.loads(out.stdout)
            growth = r["peak"] - r["before"]
            print(f"{args.variant} fp16 file -> {dtype:9s}: detected {r['num_layers']} layers x {r['vid_dim']}; "
                  f"load {time.perf_counter() - t0:.0f} s; peak RSS growth {growth / 2**30:.2f} GiB = "
                  f"{growth / size:.3f} x file size (model itself {r['model_bytes'] / size:.3f} x)")
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
