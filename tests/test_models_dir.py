"""Model lookup for the command line: folders and their order, accepted file names, missing-file messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seedvr2_core import models_dir
from seedvr2_core.errors import CheckpointError
from seedvr2_core.models_dir import (
    MODELS,
    ModelNotFoundError,
    comfyui_root,
    find_dit,
    find_embedding,
    find_vae,
    model_folders,
)
from seedvr2_core.weights.safetensors_file import write_safetensors


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"placeholder")
    return path


def test_an_explicit_folder_is_the_only_one_searched(tmp_path):
    assert model_folders(tmp_path / "m", env={"SEEDVR2_MODELS": "/elsewhere"}) == [tmp_path / "m"]


def test_environment_then_the_current_folder(tmp_path):
    folders = model_folders(None, env={"SEEDVR2_MODELS": str(tmp_path / "env")}, cwd=tmp_path)
    assert folders[0] == tmp_path / "env" and folders[-1] == tmp_path / "models" / "SEEDVR2"
    assert model_folders(None, env={}, cwd=tmp_path)[-1] == tmp_path / "models" / "SEEDVR2"


def test_the_comfyui_installation_holding_the_pack_is_found(tmp_path):
    root = tmp_path / "ComfyUI"
    pack = root / "custom_nodes" / "seedvr2-onestep" / "seedvr2_core"
    pack.mkdir(parents=True)
    (root / "models").mkdir()
    assert comfyui_root(pack) == root
    assert comfyui_root(tmp_path) is None
    here = comfyui_root(Path(models_dir.__file__).resolve().parent)
    expected = [] if here is None else [here / "models" / "SEEDVR2"]
    assert model_folders(None, env={}, cwd=root)[:-1] == expected
    assert model_folders(None, env={}, cwd=root)[-1] == root / "models" / "SEEDVR2"


def test_a_name_takes_the_first_folder_then_the_preferred_file(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    touch(first / "seedvr2_ema_3b-Q4_K_M.gguf")
    touch(first / "seedvr2_ema_3b_fp16.safetensors")
    touch(second / "seedvr2_ema_3b.pth")
    path, entry = find_dit("seedvr2-3b", [first, second])
    assert path == first / "seedvr2_ema_3b_fp16.safetensors" and entry is MODELS["seedvr2-3b"]
    path, _ = find_dit("seedvr2-3b", [second, first])
    assert path == second / "seedvr2_ema_3b.pth"
    path, entry = find_dit("seedvr2_ema_3b-Q4_K_M.gguf", [second, first])  # a bare file name is looked up too
    assert path == first / "seedvr2_ema_3b-Q4_K_M.gguf" and entry is None
    direct = touch(tmp_path / "elsewhere" / "my_dit.safetensors")
    assert find_dit(str(direct), [first]) == (direct, None)


def test_a_missing_model_says_which_file_where_it_looked_and_where_to_get_it(tmp_path):
    folders = [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(ModelNotFoundError) as error:
        find_dit("seedvr2-7b", folders)
    message = str(error.value)
    for part in ("seedvr2_ema_7b.pth", str(folders[0]), str(folders[1]),
                 "https://huggingface.co/ByteDance-Seed/SeedVR2-7B", "--download"):
        assert part in message
    assert "\n" not in message
    assert (error.value.entry, error.value.filename) == (MODELS["seedvr2-7b"], "seedvr2_ema_7b.pth")


def test_a_path_that_does_not_exist_is_not_taken_for_a_name(tmp_path):
    with pytest.raises(CheckpointError, match="neither an existing file nor a known name"):
        find_dit(str(tmp_path / "nope" / "dit.safetensors"), [tmp_path])
    with pytest.raises(CheckpointError, match="neither an existing file nor a known name"):
        find_dit("seedvr2-13b", [tmp_path])
    with pytest.raises(ModelNotFoundError, match="model file dit.safetensors not found") as error:
        find_dit("dit.safetensors", [tmp_path])
    assert error.value.entry is None  # nothing --download could fetch


def test_the_vae_is_looked_for_next_to_the_dit_first(tmp_path):
    dit = touch(tmp_path / "dits" / "seedvr2_ema_3b.pth")
    shared = tmp_path / "shared"
    touch(shared / "ema_vae.pth")
    assert find_vae(None, dit, [shared], None) == shared / "ema_vae.pth"
    touch(dit.parent / "ema_vae_fp16.safetensors")
    assert find_vae(None, dit, [shared], None) == dit.parent / "ema_vae_fp16.safetensors"
    assert find_vae("ema_vae.pth", dit, [shared], None) == shared / "ema_vae.pth"
    with pytest.raises(ModelNotFoundError, match=r"VAE not found: looked for ema_vae\.pth .*--download"):
        find_vae(None, touch(tmp_path / "x" / "d.pth"), [tmp_path / "empty"], MODELS["seedvr2-3b"])
    with pytest.raises(CheckpointError, match="VAE file missing.pth not found"):
        find_vae("missing.pth", dit, [shared], None)


def test_an_embedding_baked_into_the_dit_needs_no_file(tmp_path):
    tensors = {"model.diffusion_model.vid_in.proj.weight": torch.zeros(2, 2), "positive_conditioning": torch.ones(3, 2)}
    dit = tmp_path / "seedvr2_3b_fp16.safetensors"
    write_safetensors(dit, {k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()}, tensors.__getitem__)
    assert find_embedding(dit, [tmp_path / "empty"], None) is None
    plain = touch(tmp_path / "plain" / "seedvr2_ema_3b.pth")
    with pytest.raises(ModelNotFoundError, match=r"text embedding not found: looked for embeddings\.safetensors "
                                                 r"\(or pos_emb\.pt\)"):
        find_embedding(plain, [tmp_path / "empty"], None)
    emb = touch(tmp_path / "empty" / "pos_emb.pt")
    assert find_embedding(plain, [tmp_path / "empty"], None) == emb
