"""The node layer without a host: every node's schema is valid, and the validator rejects broken ones."""

from __future__ import annotations

import dataclasses

import pytest

from node_helpers import pack_module

spec_module = pack_module("nodes.spec")
SPECS = pack_module("nodes").SPECS
Widget, Socket, NodeSpec = spec_module.Widget, spec_module.Socket, spec_module.NodeSpec

ISSUE_NODES = {"SeedVR2LoadDiT", "SeedVR2LoadVAE", "SeedVR2Encode", "SeedVR2Restore", "SeedVR2Decode",
               "SeedVR2Upscale", "SeedVR2UpscaleVideo"}


def test_the_pack_has_the_seven_nodes_with_distinct_ids():
    ids = [s.node_id for s in SPECS]
    assert len(set(ids)) == len(ids)
    assert set(ids) == ISSUE_NODES


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.node_id)
def test_every_schema_is_valid(spec):
    assert spec_module.problems(spec) == []
    for w in spec.widgets:
        assert spec_module.accepts(w, spec.defaults()[w.name]) or (w.kind == "COMBO" and not w.option_list())


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.node_id)
def test_no_id_collides_with_comfyui_native_seedvr2_nodes(spec):
    assert spec.node_id not in spec_module.TAKEN_IDS
    assert {"SeedVR2Preprocess", "SeedVR2Conditioning", "SeedVR2TemporalChunk", "SeedVR2TemporalMerge",
            "SeedVR2PostProcessing"} <= spec_module.TAKEN_IDS


def _noop(image, seed):
    return (image,)


GOOD = NodeSpec("SeedVR2Probe", "Probe", "", (Socket("image", "IMAGE"), Widget("seed", "INT", 1, min=0, max=9)),
                (Socket("image", "IMAGE"),), _noop)


@pytest.mark.parametrize("change, complaint", [
    (dict(node_id="SeedVR2Conditioning"), "must start with"),
    (dict(node_id="Probe"), "must start with"),
    (dict(inputs=(Socket("image", "IMAGE"), Widget("seed", "INT", 10, min=0, max=9))), "outside"),
    (dict(inputs=(Socket("image", "IMAGE"), Widget("seed", "INT", 1.5))), "not int"),
    (dict(inputs=(Socket("image", "IMAGE"), Widget("seed", "COMBO", "c", options=("a", "b")))), "not among"),
    (dict(inputs=(Socket("image", "IMAGES"), Widget("seed", "INT", 1))), "unknown type"),
    (dict(inputs=(Socket("image", "IMAGE"), Widget("seed", "SLIDER", 1))), "unknown widget kind"),
    (dict(inputs=(Socket("image", "IMAGE"), Widget("image", "INT", 1))), "distinct"),
    (dict(inputs=(Socket("image", "IMAGE"), Widget("noise", "INT", 1))), "run takes"),
    (dict(outputs=()), "output node"),
])
def test_the_validator_names_what_is_broken(change, complaint):
    assert spec_module.problems(GOOD) == []
    found = spec_module.problems(dataclasses.replace(GOOD, **change))
    assert any(complaint in p for p in found), found


def test_widget_values_are_checked_like_comfyui_validates_prompts():
    seed = Widget("seed", "INT", 1, min=0, max=9)
    assert spec_module.accepts(seed, 9) and not spec_module.accepts(seed, 10) and not spec_module.accepts(seed, "1")
    assert not spec_module.accepts(seed, True)
    combo = Widget("fit", "COMBO", "pad", options=("pad", "crop"))
    assert spec_module.accepts(combo, "crop") and not spec_module.accepts(combo, "stretch")


def test_model_lists_follow_the_folder_and_put_the_likely_kind_first(tmp_path, monkeypatch):
    for name in ("seedvr2_ema_3b.pth", "ema_vae.pth", "pos_emb.pt", "notes.txt", "sub/seedvr2_ema_7b-Q4_K_M.gguf"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setenv(pack_module("seedvr2_core.host").MODELS_ENV, str(tmp_path))
    loaders = pack_module("nodes.loaders")
    assert loaders.dit_options() == ["seedvr2_ema_3b.pth", "sub/seedvr2_ema_7b-Q4_K_M.gguf", "ema_vae.pth"]
    assert loaders.vae_options() == ["ema_vae.pth", "seedvr2_ema_3b.pth", "sub/seedvr2_ema_7b-Q4_K_M.gguf"]
    (tmp_path / "ema_vae_fp16.safetensors").write_bytes(b"")
    assert loaders.vae_options()[:2] == ["ema_vae.pth", "ema_vae_fp16.safetensors"]


def test_the_layering_rule_holds():
    """Only seedvr2_core/host.py (and the V3 glue of nodes/) may import ComfyUI."""
    import ast
    from node_helpers import REPO

    host_modules = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "nodes", "server"}
    offenders = []
    for path in sorted((REPO / "seedvr2_core").rglob("*.py")) + sorted((REPO / "nodes").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = getattr(node.func, "attr", getattr(node.func, "id", ""))
                if func in ("import_module", "__import__", "comfy_module"):  # imports by name
                    names.append(str(node.args[0].value))
            for name in names:
                if name.split(".")[0] in host_modules:
                    offenders.append(f"{path.relative_to(REPO)}: {name}")
    here = {o for o in offenders if not o.startswith("seedvr2_core/host.py: ")}
    assert here == {"nodes/v3.py: comfy_api.latest"}
    assert "seedvr2_core/host.py: comfy.model_management" in offenders  # the scan sees dynamic imports
