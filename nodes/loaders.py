"""Load DiT / Load VAE: a file of the SEEDVR2 model folder, its compute dtype and its memory settings."""

from __future__ import annotations

import torch

from ..seedvr2_core import host
from ..seedvr2_core.attention import BACKENDS
from ..seedvr2_core.handles import DTYPES, open_dit, open_vae
from ..seedvr2_core.text import EMBEDDING_FILES
from ..seedvr2_core.vae import VAETiling

from .spec import NodeSpec, Socket, Widget

TILINGS = ("auto", "off", "frame", "tile")
OTHER_EMBEDDINGS = ("neg_emb.pt",)  # the official negative embedding: unused at cfg scale 1
AUTO_SWAP = -1


def _model_options(vae_first: bool) -> list[str]:
    """The model files of the SEEDVR2 folder (re-listed whenever ComfyUI asks for the schema), without the text
    embeddings; names that look like the wanted kind come first (the loaders detect the model from its weights)."""
    files = [f for f in host.model_files() if f.rsplit("/", 1)[-1] not in EMBEDDING_FILES + OTHER_EMBEDDINGS]
    return sorted(files, key=lambda f: (("vae" in f.lower()) != vae_first, f))


def dit_options() -> list[str]:
    return _model_options(vae_first=False)


def vae_options() -> list[str]:
    return _model_options(vae_first=True)


def attention_options() -> list[str]:
    """auto, sdpa, and the kernels whose package is installed (they still need a CUDA GPU to run)."""
    cuda = torch.device("cuda")  # asked about a CUDA device, a backend's predicate checks its package only
    return ["auto", "sdpa"] + [name for name, b in BACKENDS.items() if name != "sdpa" and b.is_available(cuda)]


def load_dit(model: str, dtype: str, attention: str, blocks_to_swap: int) -> tuple:
    """Widgets -> (DiTHandle,)."""
    return (open_dit(model, dtype, attention, None if blocks_to_swap == AUTO_SWAP else blocks_to_swap),)


def vae_tiling(tiling: str, tile_size: int) -> VAETiling | None:
    """The tiling widget pair -> VAETiling, or None for "auto" (planned from free memory at run time)."""
    if tiling == "auto":
        return None
    if tiling == "off":
        return VAETiling()
    return VAETiling(tile_size=tile_size, mode=tiling, tile_overlap=tile_size // 4)


def load_vae(model: str, dtype: str, tiling: str, tile_size: int) -> tuple:
    """Widgets -> (VAEHandle,)."""
    return (open_vae(model, dtype, vae_tiling(tiling, tile_size)),)


DTYPE = Widget("dtype", "COMBO", "auto", options=tuple(DTYPES),
               tooltip="Compute dtype. auto: bfloat16 on GPUs that support it, else float16; float32 on CPU. "
                       "fp8 and GGUF files stay compact in memory either way.")

LOAD_DIT = NodeSpec(
    "SeedVR2LoadDiT", "SeedVR2 Load DiT",
    "Load a SeedVR2 3B or 7B DiT (.pth, .safetensors, fp8, GGUF) from models/SEEDVR2; the size is read "
    "from the weights. The text embedding (pos_emb.pt or embeddings.safetensors) is taken from the same "
    "folder unless the file carries it.",
    (
        Widget("model", "COMBO", None, options=dit_options,
               tooltip="DiT file in models/SEEDVR2, e.g. seedvr2_ema_3b.pth or seedvr2_ema_3b_fp16.safetensors"),
        DTYPE,
        Widget("attention", "COMBO", "auto", options=attention_options,
               tooltip="auto: flash-attn when installed on a CUDA GPU, else PyTorch SDPA. sage needs sageattention."),
        Widget("blocks_to_swap", "INT", AUTO_SWAP, min=AUTO_SWAP, max=64, step=1,
               tooltip="Transformer blocks kept in RAM and streamed to the GPU one at a time. -1: auto (as many "
                       "as needed to fit the VRAM ComfyUI can give); 0: none (fastest)."),
    ),
    (Socket("dit", "SEEDVR2_DIT"),),
    load_dit,
)

LOAD_VAE = NodeSpec(
    "SeedVR2LoadVAE", "SeedVR2 Load VAE",
    "Load the SeedVR2 video VAE (ema_vae.pth or ema_vae_fp16.safetensors) from models/SEEDVR2, with how "
    "it bounds its memory.",
    (
        Widget("model", "COMBO", None, options=vae_options, tooltip="VAE file in models/SEEDVR2, e.g. ema_vae.pth"),
        DTYPE,
        Widget("tiling", "COMBO", "auto", options=TILINGS,
               tooltip="auto: whole frames when they fit the free memory, else the largest tiles that do. "
                       "off: whole frames. frame: row bands with whole-frame statistics (same result as off). "
                       "tile: independent tiles blended at the seams (least memory, slight drift)."),
        Widget("tile_size", "INT", 512, min=16, max=4096, step=16,
               tooltip="Tile side in pixels for tiling frame/tile (tiles overlap by a quarter of it)."),
    ),
    (Socket("vae", "SEEDVR2_VAE"),),
    load_vae,
)
