"""Tiny real models for pipeline tests: the golden tiny DiT (3B layout) and VAE, and a text embedding."""

from __future__ import annotations

import json

from safetensors.torch import load_file

from seedvr2_core import load_dit, load_vae


def tiny_models(reference):
    info = json.loads((reference / "golden" / "pipeline_tiny.json").read_text())
    dit = load_dit(reference / "golden" / "dit_tiny_3b.safetensors", config=info["dit_config_overrides"])
    vae = load_vae(reference / "golden" / "vae_tiny.safetensors", config=info["vae_config_overrides"])
    text = load_file(str(reference / "embeddings.safetensors"))["pos_emb"][:, : dit.config.txt_in_dim].float()
    return dit, vae, text
