"""ComfyUI nodes: thin specs that read widgets, call one core function and wrap the result.

Importing this package registers models/SEEDVR2 with ComfyUI's folder_paths when ComfyUI is running (a
no-op otherwise) and imports nothing of ComfyUI itself: `comfy_entrypoint` builds the V3 classes lazily.
"""

from ..seedvr2_core import host
from .loaders import LOAD_DIT, LOAD_VAE
from .restore import DECODE, ENCODE, RESTORE, UPSCALE
from .spec import NodeSpec
from .video import UPSCALE_VIDEO

SPECS: tuple[NodeSpec, ...] = (LOAD_DIT, LOAD_VAE, UPSCALE, UPSCALE_VIDEO, ENCODE, RESTORE, DECODE)

host.register_model_folder()


async def comfy_entrypoint():
    """ComfyUI's V3 entry point: the extension listing the pack's nodes."""
    from .v3 import SeedVR2Extension

    return SeedVR2Extension(SPECS)
