"""Finding model files for the command line: model names, the folders searched, and what to say when a
file is missing.

Official files (FACTS.md section 1): Hugging Face repositories `ByteDance-Seed/SeedVR2-3B` and `-7B` hold
`seedvr2_ema_3b.pth` / `seedvr2_ema_7b.pth`, `ema_vae.pth` (the same VAE for both) and the text embedding
`pos_emb.pt`. Repackaged files under the numz port's names (`seedvr2_ema_3b_fp16.safetensors`, fp8, GGUF,
`ema_vae_fp16.safetensors`) and ComfyUI's (`seedvr2_3b_fp16.safetensors`, embeddings baked in; HOST.md)
are accepted too, in the order listed below (official first: it is what `--download` fetches).

Folders, in order: `--models-dir` alone when given; otherwise `$SEEDVR2_MODELS`, then the `models/SEEDVR2`
folder of the ComfyUI installation this pack lives in, then `./models/SEEDVR2` under the current
directory (the README's layout; the same folder when the current directory is the ComfyUI one). The
first folder is where `--download` puts files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from .errors import CheckpointError
from .text import EMBEDDING_FILES
from .weights.sources import open_source

ENV_VAR = "SEEDVR2_MODELS"
COMFY_FOLDER = ("models", "SEEDVR2")
EMBEDDING_DOWNLOAD = "pos_emb.pt"  # neg_emb.pt is not used: the official pipeline runs at cfg scale 1
VAE_FILES = ("ema_vae.pth", "ema_vae_fp16.safetensors", "seedvr2_ema_vae_fp16.safetensors")


@dataclass(frozen=True)
class ModelEntry:
    """A model name: its official repository and file, and every file name accepted for it."""

    name: str
    repo_id: str
    official_file: str
    accepted: tuple[str, ...]  # preference order, official first

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}"


MODELS = {
    "seedvr2-3b": ModelEntry("seedvr2-3b", "ByteDance-Seed/SeedVR2-3B", "seedvr2_ema_3b.pth", (
        "seedvr2_ema_3b.pth", "seedvr2_ema_3b_fp16.safetensors", "seedvr2_3b_fp16.safetensors",
        "seedvr2_ema_3b_fp8_e4m3fn.safetensors", "seedvr2_ema_3b-Q8_0.gguf", "seedvr2_ema_3b-Q4_K_M.gguf")),
    "seedvr2-7b": ModelEntry("seedvr2-7b", "ByteDance-Seed/SeedVR2-7B", "seedvr2_ema_7b.pth", (
        "seedvr2_ema_7b.pth", "seedvr2_ema_7b_fp16.safetensors", "seedvr2_7b_fp16.safetensors",
        "seedvr2_ema_7b_fp8_e4m3fn_mixed_block35_fp16.safetensors", "seedvr2_ema_7b-Q4_K_M.gguf")),
}
DEFAULT_MODEL = "seedvr2-3b"


class ModelNotFoundError(CheckpointError):
    """A model file that is not where it was looked for; `entry` says what `--download` would fetch."""

    def __init__(self, message: str, entry: ModelEntry | None = None, filename: str | None = None):
        super().__init__(message)
        self.entry, self.filename = entry, filename


def comfyui_root(start: Path) -> Path | None:
    """The ComfyUI installation holding `start` (a folder under its custom_nodes/ next to models/)."""
    for folder in (start, *start.parents):
        if folder.name == "custom_nodes" and (folder.parent / "models").is_dir():
            return folder.parent
    return None


def model_folders(explicit: str | os.PathLike | None, env: Mapping[str, str] | None = None,
                  cwd: Path | None = None) -> list[Path]:
    """The folders searched for models, in order (see the module docstring)."""
    if explicit is not None:
        return [Path(explicit).expanduser()]
    env = os.environ if env is None else env
    folders = [Path(env[ENV_VAR]).expanduser()] if env.get(ENV_VAR) else []
    root = comfyui_root(Path(__file__).resolve().parent)
    if root is not None:
        folders.append(root.joinpath(*COMFY_FOLDER))
    folders.append((cwd or Path.cwd()).joinpath(*COMFY_FOLDER))
    return list(dict.fromkeys(f.absolute() for f in folders))  # absolute (messages), without repeats


def _first_file(names: tuple[str, ...], folders: list[Path]) -> Path | None:
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def _looked(names: tuple[str, ...], folders: list[Path]) -> str:
    shown = names[0] + (f" (or {', '.join(names[1:])})" if len(names) > 1 else "")
    return f"{shown} in {', '.join(str(f) for f in folders)}"


def find_dit(model: str, folders: list[Path]) -> tuple[Path, ModelEntry | None]:
    """`--model` (an existing file, a model name or a file name in the folders) -> (path, its ModelEntry)."""
    path = Path(model).expanduser()
    if path.is_file():
        return path, None
    entry = MODELS.get(model.lower())
    if entry is None and (os.sep in model or "/" in model or not path.suffix):
        raise CheckpointError(
            f"model {model!r} is neither an existing file nor a known name: give a checkpoint file "
            f"or one of {', '.join(MODELS)}"
        )
    names = entry.accepted if entry else (model,)
    found = _first_file(names, folders)
    if found is not None:
        return found, entry
    if entry is None:
        raise ModelNotFoundError(f"model file {model} not found: looked in {', '.join(map(str, folders))}. "
                                 "Give its full path, or put it in one of those folders (or pass --models-dir).")
    raise ModelNotFoundError(
        f"SeedVR2 model {entry.name} not found: looked for {_looked(names, folders)}. Get {entry.official_file} "
        f"from {entry.url} into {folders[0]}, or run again with --download to fetch and verify it.",
        entry, entry.official_file)


def find_vae(vae: str | None, dit_path: Path, folders: list[Path], entry: ModelEntry | None) -> Path:
    """`--vae` (a file, or None to look next to the DiT and in the folders) -> the VAE file."""
    if vae is not None:
        path = Path(vae).expanduser()
        if path.is_file():
            return path
        found = _first_file((vae,), folders) if os.sep not in vae and "/" not in vae else None
        if found is None:
            raise CheckpointError(f"VAE file {vae} not found (also looked in {', '.join(map(str, folders))}): "
                                  "give an existing file, or leave --vae out to use ema_vae.pth from the models folder")
        return found
    search = list(dict.fromkeys([dit_path.parent, *folders]))
    found = _first_file(VAE_FILES, search)
    if found is not None:
        return found
    entry = entry or MODELS[DEFAULT_MODEL]
    raise ModelNotFoundError(
        f"SeedVR2 VAE not found: looked for {_looked(VAE_FILES, search)}. Get {VAE_FILES[0]} from {entry.url} "
        f"into {folders[0]}, or run again with --download to fetch and verify it.", entry, VAE_FILES[0])


def has_baked_embedding(dit_path: Path) -> bool:
    """True if the DiT file carries the text embedding itself (ComfyUI's repackaged files)."""
    if dit_path.suffix.lower() not in (".safetensors", ".sft", ".gguf"):
        return False  # the official .pth files hold the DiT only
    reader = open_source(dit_path)
    try:
        return "pos_emb" in reader.extras
    finally:
        reader.close()


def find_embedding(dit_path: Path, folders: list[Path], entry: ModelEntry | None) -> Path | None:
    """The text embedding file next to the DiT or in the folders; None if the DiT has it baked in."""
    search = list(dict.fromkeys([dit_path.parent, *folders]))
    found = _first_file(EMBEDDING_FILES, search)
    if found is not None or has_baked_embedding(dit_path):
        return found
    entry = entry or MODELS[DEFAULT_MODEL]
    raise ModelNotFoundError(
        f"SeedVR2 text embedding not found: looked for {_looked(EMBEDDING_FILES, search)}. Get "
        f"{EMBEDDING_DOWNLOAD} from {entry.url} into {folders[0]}, or run again with --download to fetch "
        "and verify it.", entry, EMBEDDING_DOWNLOAD)
