"""Run as a subprocess: the Upscale Video node on one video; prints the output path and this process's peak RSS.

usage: node_rss_probe.py MODELS_DIR VIDEO RESOLUTION BATCH_SIZE
"""

from __future__ import annotations

import json
import os
import resource
import sys

import torch

from node_helpers import pack_module, run_node


def main() -> None:
    models, video, resolution, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    os.environ[pack_module("seedvr2_core.host").MODELS_ENV] = models
    torch.set_num_threads(1)
    dit = run_node("SeedVR2LoadDiT", model="seedvr2_ema_3b_fp16.safetensors")[0]
    vae = run_node("SeedVR2LoadVAE", model="ema_vae_fp16.safetensors")[0]
    out = run_node("SeedVR2UpscaleVideo", video=video, dit=dit, vae=vae, resolution=resolution,
                   batch_size=batch_size, overlap=1)[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps({"output": out, "peak_rss": peak}))


if __name__ == "__main__":
    main()
