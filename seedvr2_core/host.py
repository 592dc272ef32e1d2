"""The one adapter between the core and its host (../shared/HOST.md).

Only this module may import ComfyUI (`comfy`, `comfy_api`, `folder_paths`). Everything here has a
plain-Python behaviour when no ComfyUI is loaded (the CLI, the tests), so the core runs anywhere.

Cancellation: long loops (batches, tiles, DiT blocks) call `check_interrupt()`. Inside ComfyUI it raises
the host's interrupt exception when the user pressed Cancel; anywhere, callers can add their own
checks for a scope with `interrupt_checks(fn)` (the CLI and tests use this).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import sys
from typing import Callable, Iterator

import torch

_checks: contextvars.ContextVar[tuple[Callable[[], None], ...]] = contextvars.ContextVar("seedvr2_checks", default=())
_listeners: contextvars.ContextVar[tuple[Callable, ...]] = contextvars.ContextVar("seedvr2_progress", default=())


def comfy_module(name: str):
    """The host's module `name` if ComfyUI is running in this process, else None (never imports it fresh)."""
    if "comfy" not in sys.modules and name not in sys.modules:
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def in_comfyui() -> bool:
    return comfy_module("comfy.model_management") is not None


@contextlib.contextmanager
def interrupt_checks(check: Callable[[], None]) -> Iterator[None]:
    """Within this scope, `check_interrupt()` also calls `check` (which raises to cancel)."""
    token = _checks.set(_checks.get() + (check,))
    try:
        yield
    finally:
        _checks.reset(token)


def check_interrupt() -> None:
    """Raise if the user asked to stop: the host's interrupt, or any check of the current scope."""
    mm = comfy_module("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()
    for check in _checks.get():
        check()


# ==== Node integration: model folder, devices, memory, model patchers, progress ========================
# (issue 6; ../shared/HOST.md). Each function asks ComfyUI when it runs in this process and otherwise
# does the plain-Python thing, so the nodes' code paths run the same in tests and on the command line.

MODEL_FOLDER = "SEEDVR2"  # models/SEEDVR2, the folder name users already have from other packs
MODELS_ENV = "SEEDVR2_MODELS"  # outside ComfyUI: the folder holding the model files (as for the CLI)
MODEL_SUFFIXES = (".safetensors", ".sft", ".pth", ".pt", ".ckpt", ".bin", ".gguf")
PREVIEW_FORMAT = "JPEG"


def register_model_folder() -> None:
    """Inside ComfyUI: add models/SEEDVR2 to the folders of "SEEDVR2" (keeping extra_model_paths.yaml's)."""
    fp = comfy_module("folder_paths")
    if fp is not None:
        fp.add_model_folder_path(MODEL_FOLDER, os.path.join(fp.models_dir, MODEL_FOLDER))


def model_folders() -> list[str]:
    """The folders searched for model files: ComfyUI's "SEEDVR2" folders, else $SEEDVR2_MODELS or ./models/SEEDVR2."""
    fp = comfy_module("folder_paths")
    if fp is not None:
        return fp.get_folder_paths(MODEL_FOLDER) if MODEL_FOLDER in fp.folder_names_and_paths else []
    return [os.environ.get(MODELS_ENV) or os.path.join("models", MODEL_FOLDER)]


def _is_model_file(name: str) -> bool:
    return name.lower().endswith(MODEL_SUFFIXES)


def _inside(path: str, folders: list[str]) -> bool:
    """True if `path`, with every link resolved, lies in one of `folders` (also resolved)."""
    real = os.path.realpath(path)
    for folder in folders:
        base = os.path.realpath(folder)
        try:
            if os.path.commonpath([base, real]) == base:
                return True
        except ValueError:  # different drives (Windows)
            continue
    return False


def model_files() -> list[str]:
    """Model file names (relative to their folder, "/"-separated) that the loaders can be given, sorted: files
    whose real location is inside the model folders (a link pointing elsewhere is left out, see model_path)."""
    fp = comfy_module("folder_paths")
    folders = model_folders()
    if fp is not None:
        names = fp.get_filename_list(MODEL_FOLDER) if MODEL_FOLDER in fp.folder_names_and_paths else []
        return sorted(n for n in names if _is_model_file(n) and _inside(fp.get_full_path(MODEL_FOLDER, n), folders))
    found = set()
    for folder in folders:
        for root, _, files in os.walk(folder, followlinks=True):
            rel = os.path.relpath(root, folder)
            for f in files:
                if _is_model_file(f) and _inside(os.path.join(root, f), folders):
                    found.add(f if rel == "." else f"{rel}/{f}".replace(os.sep, "/"))
    return sorted(found)


def _check_name(name: object) -> str:
    """`name` if it can only name a file inside a model folder: relative, no "..", a model file suffix."""
    from .errors import CheckpointError

    text = name if isinstance(name, str) else ""
    parts = text.replace("\\", "/").split("/")
    if not text or "\0" in text or os.path.isabs(text) or os.path.splitdrive(text)[0] or ".." in parts:
        raise CheckpointError(
            f"model name {name!r} is not a file name inside {' or '.join(model_folders())}: pick one of the files "
            "the loader lists (a workflow may not name files elsewhere)"
        )
    if not _is_model_file(text):
        raise CheckpointError(f"model name {name!r} is not a model file: use one ending in {', '.join(MODEL_SUFFIXES)}")
    return text


def model_path(name: str) -> str:
    """Full path of the model file `name` from `model_files()`; CheckpointError saying where to put it.

    Names are resolved inside the model folders only: absolute names, ".." and links whose target lies
    outside every model folder are refused (a workflow from elsewhere must not open other files).
    """
    from .errors import CheckpointError

    name = _check_name(name)
    folders = model_folders()
    fp = comfy_module("folder_paths")
    if fp is not None and MODEL_FOLDER in fp.folder_names_and_paths:
        path = fp.get_full_path(MODEL_FOLDER, name)
    else:
        path = next((p for p in (os.path.join(f, name) for f in folders) if os.path.isfile(p)), None)
    if path is None:
        raise CheckpointError(
            f"model file {name!r} is not in {' or '.join(folders) or 'any models/SEEDVR2 folder'}: "
            "put it there (see the Note in the example workflows for where to download it) and refresh"
        )
    if not _inside(path, folders):
        raise CheckpointError(
            f"model file {path} links to {os.path.realpath(path)}, outside the model folders "
            f"({', '.join(folders)}): move or copy the file into a model folder, or add its folder to the SEEDVR2 "
            "entry of ComfyUI's extra_model_paths.yaml"
        )
    return path


def compute_device() -> torch.device:
    """Where models compute: ComfyUI's torch device (honours --cpu etc.), else CUDA when available, else CPU."""
    mm = comfy_module("comfy.model_management")
    if mm is not None:
        return torch.device(mm.get_torch_device())
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def offload_device() -> torch.device:
    """Where loaded models live while they do not compute (host memory unless ComfyUI runs --highvram)."""
    mm = comfy_module("comfy.model_management")
    return torch.device(mm.unet_offload_device()) if mm is not None else torch.device("cpu")


def output_device() -> torch.device:
    """Where node outputs (IMAGE tensors) go: ComfyUI's intermediate device, else the CPU."""
    mm = comfy_module("comfy.model_management")
    return torch.device(mm.intermediate_device()) if mm is not None else torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """Compute dtype for "auto": what ComfyUI would pick for a diffusion model on `device`."""
    mm = comfy_module("comfy.model_management")
    if mm is not None:
        if mm.should_use_bf16(device):
            return torch.bfloat16
        return torch.float16 if mm.should_use_fp16(device) else torch.float32
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def free_bytes(device: torch.device) -> int:
    """Memory free for us on `device` now (bytes): ComfyUI's count, else CUDA's or the available RAM."""
    mm = comfy_module("comfy.model_management")
    if mm is not None:
        return int(mm.get_free_memory(device))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)  # plus what PyTorch caches unused: ours to reuse
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    import psutil

    return int(psutil.virtual_memory().available)


def request_memory(nbytes: int, device: torch.device) -> None:
    """Ask the host to unload other models until `nbytes` are free on `device` (no-op outside ComfyUI)."""
    mm = comfy_module("comfy.model_management")
    if mm is not None and device.type != "cpu":
        mm.free_memory(nbytes + mm.extra_reserved_memory(), device)


def wrap_model(placement):
    """A ComfyUI ModelPatcher driving `placement` (seedvr2_core.placement), or None outside ComfyUI."""
    mp = comfy_module("comfy.model_patcher")
    return None if mp is None else _patcher_class(mp.ModelPatcher)(placement)


def load_models(placements: list, memory_required: int = 0) -> None:
    """Put the models on their compute device: through ComfyUI's loader (which first unloads other models
    to leave `memory_required` bytes for activations), else directly."""
    mm = comfy_module("comfy.model_management")
    patchers = [p.patcher for p in placements]
    if mm is None or any(p is None for p in patchers):
        for placement in placements:
            placement.load()
        return
    mm.load_models_gpu(patchers, memory_required=memory_required)


def _patcher_class(base: type) -> type:
    """ModelPatcher whose loading and unloading move a Placement instead of patching weights one by one."""

    class SeedVR2Patcher(base):
        def __init__(self, placement):
            super().__init__(placement.model, placement.device, placement.home, size=placement.total_bytes)
            self.placement = placement

        def clone(self):
            return type(self)(self.placement)

        def model_size(self):
            return self.placement.total_bytes

        def loaded_size(self):
            return self.placement.loaded_bytes

        def current_loaded_device(self):
            return self.load_device if self.placement.loaded else self.offload_device

        def model_dtype(self):
            return self.placement.dtype

        def model_patches_to(self, device):
            pass  # no patches: the weights are used as loaded

        def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
            before = self.placement.loaded_bytes
            self.placement.load(budget=int(min(extra_memory, 1 << 62)) + before)
            return self.placement.loaded_bytes - before

        def partially_unload(self, device_to, memory_to_free=0, force_patch_weights=False):
            return self.placement.unload()

        def detach(self, unpatch_all=True):
            self.placement.unload()
            return self.model

    return SeedVR2Patcher


@contextlib.contextmanager
def progress_listeners(listener: Callable[[float, float, object], None]) -> Iterator[None]:
    """Within this scope every `Progress.update` also calls listener(value, total, preview_frame_or_None)."""
    token = _listeners.set(_listeners.get() + (listener,))
    try:
        yield
    finally:
        _listeners.reset(token)


class Progress:
    """The node's progress bar: ComfyUI's ProgressBar (with preview frames) and any scoped listeners.

    Every update is a cancel point, as ComfyUI's own progress hook is.
    """

    def __init__(self, total: float):
        utils = comfy_module("comfy.utils")
        self.total = total
        self.bar = utils.ProgressBar(total) if utils is not None else None

    def update(self, value: float, preview: torch.Tensor | None = None) -> None:
        """value in [0, total]; preview: one frame (H, W, 3) float in [0, 1] to show, or None."""
        value = min(value, self.total)
        if self.bar is not None:
            self.bar.update_absolute(value, self.total, _preview_tuple(preview))
        for listener in _listeners.get():
            listener(value, self.total, preview)
        check_interrupt()


def _preview_tuple(frame: torch.Tensor | None):
    """("JPEG", PIL image, max size) as ComfyUI's progress hook takes it, or None."""
    if frame is None:
        return None
    from PIL import Image  # ComfyUI depends on Pillow; only reached inside ComfyUI

    cli_args = comfy_module("comfy.cli_args")
    max_size = getattr(getattr(cli_args, "args", None), "preview_size", 512)
    pixels = frame.detach().float().clamp(0, 1).mul(255).round().to("cpu", torch.uint8).numpy()
    return PREVIEW_FORMAT, Image.fromarray(pixels[..., :3]), max_size


def temp_folder() -> str:
    """Where node outputs that are files go before a Save node copies them: ComfyUI's temp folder, else the OS's."""
    fp = comfy_module("folder_paths")
    if fp is not None:
        return fp.get_temp_directory()
    import tempfile

    return tempfile.gettempdir()
