"""Model names from a workflow resolve only inside the model folders (host.model_path, without ComfyUI;
tests/comfy_host_check.py checks the same inside a real ComfyUI): no "..", no absolute names, no link
whose target lies outside, and the loaders' list offers exactly what resolves."""

from __future__ import annotations

import os

import pytest

from seedvr2_core import host
from seedvr2_core.errors import CheckpointError


@pytest.fixture()
def layout(tmp_path, monkeypatch):
    """models/ (the model folder, itself reached through a link) with a file, a subfolder, an inner link, and
    links to a file and a folder outside it; outside/ holds real model files."""
    real_models = tmp_path / "disk" / "models"
    (real_models / "sub").mkdir(parents=True)
    (real_models / "dit.safetensors").write_bytes(b"x")
    (real_models / "sub" / "vae.pth").write_bytes(b"x")
    (real_models / "notes.txt").write_bytes(b"x")
    (real_models / "alias.safetensors").symlink_to(real_models / "dit.safetensors")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.safetensors").write_bytes(b"x")
    (real_models / "escape.safetensors").symlink_to(outside / "secret.safetensors")
    (real_models / "linked_dir").symlink_to(outside, target_is_directory=True)
    models = tmp_path / "models"
    models.symlink_to(real_models, target_is_directory=True)  # e.g. a models folder on another drive
    monkeypatch.setenv(host.MODELS_ENV, str(models))
    return models, outside


def test_the_list_holds_exactly_the_files_inside(layout):
    assert host.model_files() == ["alias.safetensors", "dit.safetensors", "sub/vae.pth"]


@pytest.mark.parametrize("name", ["dit.safetensors", "sub/vae.pth", "alias.safetensors"])
def test_listed_names_resolve_inside_the_folder(layout, name):
    models, _ = layout
    path = host.model_path(name)
    assert path == os.path.join(str(models), name) and os.path.isfile(path)


@pytest.mark.parametrize("name", ["../outside/secret.safetensors", "sub/../../outside/secret.safetensors",
                                  "..\\outside\\secret.safetensors", "", "a\0b.safetensors", None])
def test_names_that_could_leave_the_folder_are_refused(layout, name):
    with pytest.raises(CheckpointError, match="is not a file name inside .*pick one of the files the loader lists"):
        host.model_path(name)


def test_absolute_names_are_refused_even_for_files_inside(layout):
    models, outside = layout
    for path in (outside / "secret.safetensors", models / "dit.safetensors"):
        assert path.is_file()
        with pytest.raises(CheckpointError, match="is not a file name inside"):
            host.model_path(str(path))


def test_other_files_are_not_model_files(layout):
    with pytest.raises(CheckpointError, match=r"'notes.txt' is not a model file: use one ending in \.safetensors"):
        host.model_path("notes.txt")


@pytest.mark.parametrize("name", ["escape.safetensors", "linked_dir/secret.safetensors"])
def test_links_to_files_outside_are_refused_saying_where_they_point(layout, name):
    models, outside = layout
    assert os.path.isfile(models / name)  # reachable through the link, so only the check refuses it
    with pytest.raises(CheckpointError) as caught:
        host.model_path(name)
    message = str(caught.value)
    assert message.startswith(f"model file {models / name} links to {os.path.realpath(outside / 'secret.safetensors')}")
    assert "outside the model folders" in message and "extra_model_paths.yaml" in message


def test_a_missing_file_says_where_to_put_it(layout):
    models, _ = layout
    with pytest.raises(CheckpointError, match=f"'seedvr2_ema_7b.pth' is not in {models}: put it there"):
        host.model_path("seedvr2_ema_7b.pth")
