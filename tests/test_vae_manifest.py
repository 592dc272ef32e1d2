"""The official VAE config builds exactly the official state dict; configs take official field names."""

from __future__ import annotations

import json

import pytest
import torch

from seedvr2_core import VAE_CONFIGS, ConfigError, VideoAutoencoder, make_vae_config


def test_meta_model_matches_manifest(reference):
    data = json.loads((reference / "manifests" / "vae.json").read_text())
    with torch.device("meta"):
        vae = VideoAutoencoder(make_vae_config(data["config"]))
    got = [(k, list(v.shape)) for k, v in vae.state_dict().items()]
    assert got == [(k, shape) for k, shape, _ in data["state_dict"]]
    assert len(got) == 250 == data["num_state_dict_entries"]
    assert sum(p.numel() for p in vae.parameters()) == 250_648_227 == data["num_parameters"]
    assert sum(p.numel() for p in vae.encoder.parameters()) == data["encoder_parameters"]
    assert sum(p.numel() for p in vae.decoder.parameters()) == data["decoder_parameters"]
    assert make_vae_config(data["config"]) == VAE_CONFIGS["seedvr2-vae"]


def test_golden_config_overrides_official(golden):
    info, _ = golden("vae_tiny")
    cfg = make_vae_config(info["config"])
    assert cfg.block_out_channels == (8, 16, 16, 16) and cfg.norm_num_groups == 4
    assert cfg.latent_channels == 16 and cfg.scaling_factor == 0.9152


@pytest.mark.parametrize(
    "overrides,needle",
    [
        ({"block_out_chanels": [8, 16]}, "block_out_chanels"),
        ({"act_fn": "gelu"}, "act_fn"),
        ({"use_quant_conv": True}, "use_quant_conv"),
        ({"block_out_channels": [8, 16, 16, 18], "norm_num_groups": 4}, "multiples"),
        ({"temporal_scale_num": 1}, "temporal_downsample_factor"),
        ({"time_receptive_field": "half"}, "time_receptive_field"),
    ],
)
def test_bad_config_fields_raise_config_error(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        make_vae_config(overrides)
