"""The official configs build exactly the official state dicts (keys, order, shapes, parameter counts)."""

from __future__ import annotations

import json

import pytest
import torch

from seedvr2_core import NaDiT, make_dit_config


@pytest.mark.parametrize(
    "name,manifest,entries,params",
    [("seedvr2-3b", "dit_3b.json", 635, 3_391_475_776), ("seedvr2-7b", "dit_7b.json", 1128, 8_239_607_872)],
)
def test_meta_model_matches_manifest(reference, name, manifest, entries, params):
    data = json.loads((reference / "manifests" / manifest).read_text())
    with torch.device("meta"):
        model = NaDiT(make_dit_config(name))
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert got == [(k, shape) for k, shape, _ in data["state_dict"]]
    assert len(got) == entries
    assert sum(p.numel() for p in model.parameters()) == params == data["num_parameters"]
