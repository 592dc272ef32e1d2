"""Loading real-width checkpoints: layout, detection, strictness, and the RAM it takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from seedvr2_core import NaDiT, StateDictMismatchError, UnsupportedCheckpointError, load_dit, make_dit_config
from seedvr2_core.random_weights import random_state_dict, write_random_checkpoint
from conftest import REPO


@pytest.fixture(scope="module")
def real_width_3b(tmp_path_factory):
    """Real 3B widths with two blocks (one per-stream, one shared and special last), fp16 on disk."""
    cfg = make_dit_config("seedvr2-3b", {"num_layers": 2, "mm_layers": 1})
    with torch.device("meta"):
        model = NaDiT(cfg)
    path = tmp_path_factory.mktemp("real3b") / "seedvr2_ema_3b_2layers_fp16.safetensors"
    write_random_checkpoint(model, path, torch.float16, seed=1)
    return cfg, path


def test_real_width_file_detected_and_loaded(real_width_3b):
    cfg, path = real_width_3b
    model = load_dit(path, dtype=torch.float16)
    assert model.config == cfg
    assert model.vid_in.proj.weight.dtype == torch.float16
    assert model.blocks[0].ada.vid.attn_scale.dtype == torch.float32  # vectors kept in float32


def test_loading_fp16_file_peaks_below_1_2x_file_size(real_width_3b):
    """Measured in a fresh process: peak RSS growth while loading, over the file's size."""
    _, path = real_width_3b
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, str(REPO / "tests" / "rss_probe.py"), "dit", str(path), "float16"],
        capture_output=True, text=True, check=True, cwd=REPO, env=env,
    )
    r = json.loads(out.stdout)
    size = os.path.getsize(path)
    ratio = (r["peak"] - r["before"]) / size
    print(f"file {size / 2**20:.0f} MiB, peak growth {(r['peak'] - r['before']) / 2**20:.0f} MiB, ratio {ratio:.3f}")
    assert ratio <= 1.2


def test_full_size_configs_detected_from_shapes():
    """Detection reads the official 3B and 7B configs back from state-dict shapes alone."""
    from seedvr2_core.weights.detect import detect_dit_config
    from seedvr2_core.weights.torch_file import StateDictSource
    from seedvr2_core.dit.loader import resolve_dit_config
    from seedvr2_core.weights.canonicalize import CanonicalSource

    for name in ("seedvr2-3b", "seedvr2-7b"):
        with torch.device("meta"):
            sd = NaDiT(make_dit_config(name)).state_dict()
        source = CanonicalSource(StateDictSource(sd, path=f"<{name} layout>"))
        family, _ = detect_dit_config(source)
        assert family == name
        assert resolve_dit_config(source, None) == make_dit_config(name)


def test_prefixed_keys_load(golden):
    info, weights = golden("dit_tiny_3b")
    from safetensors.torch import load_file

    sd = {f"model.diffusion_model.{k}": v for k, v in load_file(str(weights)).items()}
    model = load_dit(sd, config=info["config_overrides_vs_official"])
    assert model.config.vid_dim == 64


def test_missing_and_unexpected_keys_are_listed(golden):
    info, weights = golden("dit_tiny_3b")
    from safetensors.torch import load_file

    sd = load_file(str(weights))
    sd.pop("blocks.1.attn.proj_out.txt.bias")
    sd["blocks.1.attn.extra.weight"] = torch.zeros(1)
    with pytest.raises(StateDictMismatchError, match=r"1 missing keys: blocks\.1\.attn\.proj_out\.txt\.bias.*1 unexpected keys: blocks\.1\.attn\.extra\.weight"):
        load_dit(sd, config=info["config_overrides_vs_official"])


def test_wrong_shape_is_named(golden):
    info, weights = golden("dit_tiny_7b")
    with pytest.raises(StateDictMismatchError, match="wrong shape"):
        load_dit(weights, config={**info["config_overrides_vs_official"], "head_dim": 32})


def test_other_models_are_named():
    sd = {"double_blocks.0.img_attn.qkv.weight": torch.zeros(2, 2), "img_in.weight": torch.zeros(2, 2)}
    with pytest.raises(UnsupportedCheckpointError, match="looks like a Flux transformer, not a SeedVR2 DiT"):
        load_dit(sd)
    vae_like = {"encoder.conv_in.weight": torch.zeros(8, 3, 3, 3, 3), "decoder.conv_in.weight": torch.zeros(1),
                "decoder.conv_out.weight": torch.zeros(1)}
    with pytest.raises(UnsupportedCheckpointError, match="looks like a SeedVR2 VAE"):
        load_dit(vae_like)


def test_3b_weights_with_7b_config_refused(golden):
    _, weights = golden("dit_tiny_3b")
    with pytest.raises(StateDictMismatchError, match="missing keys"):
        load_dit(weights, config="seedvr2-7b")


def test_random_state_dict_roundtrip():
    cfg = make_dit_config("seedvr2-7b", {"vid_dim": 32, "heads": 2, "head_dim": 16, "num_layers": 2, "txt_in_dim": 8})
    with torch.device("meta"):
        sd = random_state_dict(NaDiT(cfg), seed=3)
    assert load_dit(sd).config == cfg
