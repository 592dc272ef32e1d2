"""The tiny random-weight models written by `python -m seedvr2_core.make_test_models`: official file names,
the golden tiny configs, loadable by the real loaders, and outputs that resemble the input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from media_build import synthetic_frames

from seedvr2_core.config import make_dit_config
from seedvr2_core.dit.loader import load_dit
from seedvr2_core.make_test_models import DIT_FILE, EMBEDDING_FILE, TINY_DIT_3B, TINY_VAE, VAE_FILE
from seedvr2_core.pipeline import restore
from seedvr2_core.text import find_text_embedding

ROOT = Path(__file__).resolve().parents[1]


def test_the_tiny_sizes_are_the_golden_models(golden):
    assert TINY_DIT_3B == golden("dit_tiny_3b")[0]["config_overrides_vs_official"]
    assert TINY_VAE == golden("vae_tiny")[0]["overrides_vs_official"]


def test_the_command_writes_loadable_models_that_give_input_like_pictures(tmp_path, golden, one_thread):
    from seedvr2_core import load_vae
    from seedvr2_core.config import make_vae_config

    done = subprocess.run([sys.executable, "-m", "seedvr2_core.make_test_models", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "SEEDVR2"
    assert sorted(p.name for p in folder.iterdir()) == sorted([DIT_FILE, VAE_FILE, EMBEDDING_FILE])
    dit = load_dit(folder / DIT_FILE)
    assert dit.config == make_dit_config("seedvr2-3b", golden("dit_tiny_3b")[0]["config_overrides_vs_official"])
    vae = load_vae(folder / VAE_FILE)
    assert vae.config == make_vae_config(golden("vae_tiny")[0]["overrides_vs_official"])
    text = find_text_embedding([folder], dit)
    assert text.shape == (58, 32) and text.dtype == torch.bfloat16

    frames = torch.from_numpy(synthetic_frames(5, 96, 128))
    out = restore(frames, dit, vae, text, batch_size=5, overlap=0)
    assert out.shape == frames.shape and out.dtype == torch.uint8
    mse = (out.float() - frames.float()).pow(2).mean()
    psnr = 10 * torch.log10(255**2 / mse)
    # Measured 26.6 dB with the scaled-down decoder output; an unscaled random decoder gives 12.2 dB.
    assert psnr > 20, psnr
