"""Run with ComfyUI's Python, cwd anywhere: the pack inside a real ComfyUI process, without the server.

usage: comfy_host_check.py COMFYUI_DIR MODELS_DIR EXTRA_DIR
(MODELS_DIR holds SEEDVR2/ with the tiny models; EXTRA_DIR/more/ holds one more DiT, registered through an
extra_model_paths.yaml as ComfyUI's main.py does before it loads custom nodes)

Checks, printing one JSON line of findings (the calling test asserts on them):
* the V3 classes: ComfyUI validates every schema (GET_SCHEMA) and builds the node info /object_info serves;
* pyproject.toml as ComfyUI's registry parser reads it (supported OS, accelerators, ComfyUI version);
* folder_paths: models/SEEDVR2 is registered next to extra_model_paths.yaml's folders, and files are resolved
  only through folder_paths;
* ModelPatcher: load_models_gpu places our models, unload_all_models and free_memory give them back, an
  "auto" DiT picks swapped blocks from the budget a partial load grants;
* progress: ComfyUI's ProgressBar hook sees the frames advance to the total with JPEG preview frames;
* interrupt: ComfyUI's interrupt flag stops a run between stages, and the next run equals an uninterrupted one.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import sys
from pathlib import Path


def load_comfy(comfy_dir: Path, models: Path, extra: Path):
    sys.path.insert(0, str(comfy_dir))
    from comfy.cli_args import args

    args.cpu = True
    args.base_directory = None
    import folder_paths
    import utils.extra_config

    folder_paths.models_dir = str(models)  # as --base-directory / a models symlink would
    yaml = extra / "extra_model_paths.yaml"
    yaml.write_text(f"mine:\n  base_path: {extra}\n  SEEDVR2: more/\n")
    utils.extra_config.load_extra_path_config(str(yaml))
    import comfy.model_management as mm
    import comfy.utils

    return folder_paths, mm, comfy.utils


def load_pack(repo: Path):
    """The checkout imported as ComfyUI's load_custom_node imports a pack folder."""
    name = str(repo).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, repo / "__init__.py", submodule_search_locations=[str(repo)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module, lambda sub: importlib.import_module(f"{name}.{sub}")


def check_schemas(pack) -> dict:
    extension = asyncio.run(pack.comfy_entrypoint())
    asyncio.run(extension.on_load())
    classes = asyncio.run(extension.get_node_list())
    info = {}
    for cls in classes:
        cls.GET_SCHEMA()  # ComfyUI's own validation
        v1 = cls.GET_NODE_INFO_V1()  # what /object_info serves (0.8.0's GET_NODE_INFO_V3 itself fails)
        info[cls.__name__] = {"outputs": v1["output"], "inputs": list(v1["input"]["required"]),
                              "input_types": list(cls.INPUT_TYPES()["required"])}
    return info


def main() -> None:
    comfy_dir, models, extra = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    folder_paths, mm, utils = load_comfy(comfy_dir, models, extra)
    import torch

    torch.set_num_threads(1)
    repo = Path(__file__).resolve().parents[1]
    pack, sub = load_pack(repo)
    host, errors, run_node = sub("seedvr2_core.host"), sub("seedvr2_core.errors"), None
    found = {"schemas": check_schemas(pack), "in_comfyui": host.in_comfyui()}
    specs = {s.node_id: s for s in sub("nodes").SPECS}

    def run_node(node_id, **values):
        spec = specs[node_id]
        args = {**spec.defaults(), **values}
        return spec.run(**{i.name: args[i.name] for i in spec.inputs})

    from comfy_config import config_parser

    config = config_parser.extract_node_configuration(str(repo))
    found["registry"] = {"os": config.project.supported_os, "accelerators": config.project.supported_accelerators,
                         "comfyui": config.project.supported_comfyui_version,
                         "publisher": config.tool_comfy.publisher_id, "name": config.tool_comfy.display_name,
                         "icon": config.tool_comfy.icon}
    found["folders"] = folder_paths.get_folder_paths("SEEDVR2")
    # A link in the model folder to a file outside every model folder: neither listed nor resolved.
    (extra / "outside.safetensors").write_bytes(b"x")
    (models / "SEEDVR2" / "linked_out.safetensors").unlink(missing_ok=True)
    (models / "SEEDVR2" / "linked_out.safetensors").symlink_to(extra / "outside.safetensors")
    found["files"] = host.model_files()
    found["extra_loads"] = type(run_node("SeedVR2LoadDiT", model="extra_dit.safetensors")[0]).__name__
    try:
        host.model_path("../SEEDVR2/seedvr2_ema_3b_fp16.safetensors")
        found["outside"] = "resolved"
    except errors.CheckpointError:
        found["outside"] = "refused"
    try:
        host.model_path("linked_out.safetensors")
        found["link_outside"] = "resolved"
    except errors.CheckpointError as e:
        found["link_outside"] = "refused" if "links to" in str(e) else str(e)

    dit = run_node("SeedVR2LoadDiT", model="seedvr2_ema_3b_fp16.safetensors")[0]
    vae = run_node("SeedVR2LoadVAE", model="ema_vae_fp16.safetensors")[0]
    found["patchers"] = [type(h.placement.patcher).__mro__[1].__name__ for h in (dit, vae)]
    images = torch.rand(9, 24, 32, 3, generator=torch.Generator().manual_seed(1))
    settings = dict(image=images, dit=dit, vae=vae, resolution=32, batch_size=5, overlap=1)

    updates = []
    utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: updates.append(
        (value, total, None if preview is None else [preview[0], list(preview[1].size), preview[2]])))
    reference = run_node("SeedVR2Upscale", **settings)[0]
    found["progress"] = {"count": len(updates), "last": updates[-1][:2],
                         "previews": [u[2] for u in updates if u[2] is not None],
                         "monotonic": [u[0] for u in updates] == sorted(u[0] for u in updates)}
    loaded = [m.model for m in mm.current_loaded_models]
    found["loaded_by_comfy"] = [any(p is h.placement.patcher for p in loaded) for h in (dit, vae)]
    found["placed"] = [h.placement.loaded for h in (dit, vae)]
    mm.unload_all_models()
    found["after_unload_all"] = [h.placement.loaded for h in (dit, vae)]

    def interrupt_at(n):
        def hook(value, total, preview, node_id=None):
            updates.append(value)
            if len(updates) == n:
                mm.interrupt_current_processing(True)  # what the server's /interrupt does
        return hook

    interrupted = []
    for n in (3, 12, 30):
        updates.clear()
        utils.set_progress_bar_global_hook(interrupt_at(n))
        try:
            run_node("SeedVR2Upscale", **settings)
            interrupted.append(False)
        except mm.InterruptProcessingException:
            interrupted.append(True)
        mm.interrupt_current_processing(False)
        utils.set_progress_bar_global_hook(None)
        found.setdefault("rerun_equal", []).append(bool(torch.equal(run_node("SeedVR2Upscale", **settings)[0],
                                                                    reference)))
    found["interrupted"] = interrupted

    auto = run_node("SeedVR2LoadDiT", model="seedvr2_ema_3b_fp16.safetensors", blocks_to_swap=-1)[0]
    block = sum(t.nbytes for t in auto.model.blocks[0].state_dict().values())
    patcher = auto.placement.patcher
    patcher.partially_load(torch.device("cpu"), extra_memory=auto.placement.total_bytes - block)
    found["auto_swap"] = {"swapped": auto.placement.swapped_blocks, "loaded": patcher.loaded_size(),
                          "size": patcher.model_size()}
    found["freed"] = patcher.partially_unload(torch.device("cpu"), memory_to_free=1)
    found["auto_after_unload"] = auto.placement.loaded
    print(json.dumps(found))


if __name__ == "__main__":
    main()
