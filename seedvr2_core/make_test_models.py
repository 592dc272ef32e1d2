"""Tiny random-weight SeedVR2 models under the official file names, for CI, tests and trying the command
line or the nodes without downloading 7 GB.

`python -m seedvr2_core.make_test_models DIR` writes into `DIR/SEEDVR2/`:
* `seedvr2_ema_3b_fp16.safetensors`: a 4-block DiT of the 3B architecture at width 64,
* `ema_vae_fp16.safetensors`: the video VAE with channels [8, 16, 16, 16] (4 norm groups),
* `embeddings.safetensors`: `pos_emb` (58, 32) and `neg_emb` (64, 32) text embeddings (the DiT's width).
The sizes are those of the official code's tiny golden models (reference golden/dit_tiny_3b.json key
`config_overrides_vs_official`, golden/vae_tiny.json key `overrides_vs_official`); every architectural
setting beyond them is official. Each model file carries its config as JSON in the safetensors metadata
key `seedvr2_config`, which the loaders read, so the files load like real ones. Weights are random
(seeded; random_weights.py): outputs have the input's colours and layout (the colour fix takes the
low frequencies from the input) with model-made detail, which is all a test of the plumbing needs.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from .config import make_dit_config
from .dit.loader import CONFIG_METADATA_KEY
from .dit.model import NaDiT
from .random_weights import random_tensor, write_random_checkpoint
from .weights.safetensors_file import write_safetensors

TINY_DIT_3B = {"vid_dim": 64, "txt_in_dim": 32, "heads": 2, "head_dim": 32, "rope_dim": 32, "num_layers": 4,
               "mm_layers": 2}
TINY_VAE = {"block_out_channels": [8, 16, 16, 16], "norm_num_groups": 4}
DIT_FILE = "seedvr2_ema_3b_fp16.safetensors"
VAE_FILE = "ema_vae_fp16.safetensors"
EMBEDDING_FILE = "embeddings.safetensors"
TEXT_TOKENS = {"pos_emb": 58, "neg_emb": 64}  # the official embeddings' token counts (FACTS.md section 1)
SUBFOLDER = "SEEDVR2"
# A random decoder paints full-scale noise (measured std 0.65 of the [-1, 1] range, 13 % clipped); scaled
# down at its last layer it adds faint detail to the input's colours instead.
DECODER_OUT_SCALE = 0.05


def write_tiny_dit(path: Path, seed: int = 0, dtype: torch.dtype = torch.float16) -> Path:
    """A tiny random DiT of the 3B architecture (TINY_DIT_3B) as a safetensors file with its config."""
    with torch.device("meta"):
        model = NaDiT(make_dit_config("seedvr2-3b", TINY_DIT_3B))
    write_random_checkpoint(model, path, dtype, seed, {CONFIG_METADATA_KEY: json.dumps(TINY_DIT_3B)})
    return path


def write_tiny_vae(path: Path, seed: int = 1, dtype: torch.dtype = torch.float16) -> Path:
    """A tiny random video VAE (TINY_VAE) as a safetensors file with its config."""
    from .config import make_vae_config
    from .vae.model import VideoAutoencoder

    with torch.device("meta"):
        model = VideoAutoencoder(make_vae_config(TINY_VAE))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(seed)

    def produce(key: str) -> torch.Tensor:
        tensor = random_tensor(key, shapes[key], generator)
        return tensor.mul_(DECODER_OUT_SCALE) if key.startswith("decoder.conv_out.") else tensor

    specs = {k: (dtype, s) for k, s in shapes.items()}
    write_safetensors(path, specs, produce, {CONFIG_METADATA_KEY: json.dumps(TINY_VAE)})
    return path


def write_tiny_embeddings(path: Path, seed: int = 2, width: int = TINY_DIT_3B["txt_in_dim"]) -> Path:
    """`pos_emb` / `neg_emb` of the official token counts and the tiny DiT's width, bfloat16 like the originals."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {name: torch.randn(tokens, width, generator=generator) for name, tokens in TEXT_TOKENS.items()}
    write_safetensors(path, {n: (torch.bfloat16, tuple(t.shape)) for n, t in tensors.items()}, tensors.__getitem__)
    return path


def write_test_models(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write the three tiny model files into `folder`/SEEDVR2 (created); returns that folder."""
    target = Path(folder) / SUBFOLDER
    target.mkdir(parents=True, exist_ok=True)
    write_tiny_dit(target / DIT_FILE, seed)
    write_tiny_vae(target / VAE_FILE, seed + 1)
    write_tiny_embeddings(target / EMBEDDING_FILE, seed + 2)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seedvr2_core.make_test_models",
                                     description="Write tiny random-weight SeedVR2 models into DIR/SEEDVR2.")
    parser.add_argument("folder", metavar="DIR")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    target = write_test_models(args.folder, args.seed)
    for path in sorted(target.iterdir()):
        print(f"{path}  {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
