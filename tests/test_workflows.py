"""The drag-and-drop workflows: only node types that exist, widget values our schemas accept, links whose
types match, the five workflows the README promises, and a Note naming the model files in each."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from node_helpers import REPO, pack_module
from seedvr2_core.make_test_models import DIT_FILE, VAE_FILE, write_test_models

host = pack_module("seedvr2_core.host")
SPECS = {s.node_id: s for s in pack_module("nodes").SPECS}
accepts = pack_module("nodes.spec").accepts
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
# ComfyUI core node types the workflows use (ComfyUI 0.8.0: nodes.py, comfy_extras/nodes_video.py; Note is a
# frontend-only node). The host tests check them against a real ComfyUI.
CORE_NODES = {"LoadImage", "SaveImage", "LoadVideo", "SaveVideo", "GetVideoComponents", "CreateVideo", "Note"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
PROMISED = {
    "seedvr2_image_upscale.json": {"SeedVR2Upscale", "LoadImage", "SaveImage"},
    "seedvr2_image_upscale_modular.json": {"SeedVR2Encode", "SeedVR2Restore", "SeedVR2Decode"},
    "seedvr2_video_upscale.json": {"LoadVideo", "SaveVideo", "SeedVR2Upscale", "CreateVideo"},
    "seedvr2_long_video.json": {"LoadVideo", "SeedVR2UpscaleVideo", "SaveVideo"},
    "seedvr2_low_vram_video.json": {"LoadVideo", "SeedVR2UpscaleVideo", "SaveVideo"},
}


@pytest.fixture(scope="module", autouse=True)
def models(tmp_path_factory):
    """The tiny models under the official names, so the model combos list what the workflows select."""
    folder = write_test_models(tmp_path_factory.mktemp("models"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(host.MODELS_ENV, str(folder))
        yield folder


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def widget_values(spec, values: list) -> dict:
    """Map a UI node's widgets_values onto the spec's widgets (a seed's control value follows it)."""
    out, i = {}, 0
    for w in spec.widgets:
        assert i < len(values), f"{spec.node_id}: no value for {w.name}"
        out[w.name] = values[i]
        i += 1
        if w.control_after_generate:
            assert values[i] in CONTROL_VALUES, f"{spec.node_id}: {w.name} is not followed by a control value"
            i += 1
    assert i == len(values), f"{spec.node_id}: {len(values) - i} extra widget values {values[i:]}"
    return out


def test_the_promised_workflows_are_there():
    assert {p.name for p in WORKFLOWS} == set(PROMISED)
    for path in WORKFLOWS:
        assert PROMISED[path.name] <= {n["type"] for n in load(path)["nodes"]}, path.name


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_nodes_exist_and_widget_values_are_accepted(path):
    for node in load(path)["nodes"]:
        assert node["type"] in SPECS or node["type"] in CORE_NODES, f"{path.name}: unknown node {node['type']}"
        if node["type"] in SPECS:
            spec = SPECS[node["type"]]
            for name, value in widget_values(spec, node["widgets_values"]).items():
                widget = next(w for w in spec.widgets if w.name == name)
                assert accepts(widget, value), f"{path.name}: {node['type']}.{name} = {value!r}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_links_join_outputs_and_inputs_of_one_type(path):
    workflow = load(path)
    nodes = {n["id"]: n for n in workflow["nodes"]}
    for link_id, source, slot, target, target_slot, kind in workflow["links"]:
        out, inp = nodes[source]["outputs"][slot], nodes[target]["inputs"][target_slot]
        assert out["type"] == kind and link_id in out["links"] and inp["link"] == link_id
        assert inp["type"] in (kind, "*"), f"{path.name}: link {link_id} {kind} into {inp['type']}"
        for node, side, index in ((nodes[source], "outputs", slot), (nodes[target], "inputs", target_slot)):
            if node["type"] in SPECS and "widget" not in node[side][index]:
                sockets = SPECS[node["type"]].outputs if side == "outputs" else \
                    [i for i in SPECS[node["type"]].inputs if not hasattr(i, "kind")]
                assert node[side][index]["type"] == sockets[index].type
    for node in nodes.values():
        if node["type"] in SPECS:
            required = {i.name for i in SPECS[node["type"]].inputs if not hasattr(i, "kind") and not i.optional}
            linked = {i["name"] for i in node["inputs"] if i.get("link") is not None}
            assert required <= linked, f"{path.name}: {node['type']} misses {required - linked}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_a_note_says_which_model_files_to_get_and_where_to_put_them(path):
    workflow = load(path)
    notes = " ".join(str(v) for n in workflow["nodes"] if n["type"] == "Note" for v in n["widgets_values"])
    for needed in ("seedvr2_ema_3b.pth", "seedvr2_ema_7b.pth", "ema_vae.pth", "pos_emb.pt", "models/SEEDVR2",
                   "ByteDance-Seed/SeedVR2-3B", "ema_vae_fp16.safetensors", "make_test_models"):
        assert needed in notes, f"{path.name}: the Note does not mention {needed}"
    selected = {v for n in workflow["nodes"] if n["type"] in ("SeedVR2LoadDiT", "SeedVR2LoadVAE")
                for v in n["widgets_values"][:1]}
    assert selected == {DIT_FILE, VAE_FILE}  # what make_test_models writes, so the workflow runs as saved


def core_node_ids(comfyui: Path) -> set[str]:
    """Node ids ComfyUI defines in its source (V1 mappings and V3 schemas)."""
    ids = set()
    for source in [comfyui / "nodes.py", *sorted((comfyui / "comfy_extras").glob("*.py"))]:
        text = source.read_text(encoding="utf-8")
        ids |= set(re.findall(r'node_id="([A-Za-z0-9_]+)"', text))  # V3 schemas
        ids |= set(re.findall(r'^\s+"([A-Za-z0-9_]+)": ', text, re.M))  # V1 NODE_CLASS_MAPPINGS entries
    return ids


@pytest.mark.skipif(not os.environ.get("COMFYUI_DIR"), reason="needs a real ComfyUI: set COMFYUI_DIR")
def test_the_core_nodes_exist_in_comfyui():
    assert CORE_NODES - {"Note"} <= core_node_ids(Path(os.environ["COMFYUI_DIR"]))
