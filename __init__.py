"""ComfyUI entry point of the SeedVR2 one-step restoration pack: registers the nodes only (V3 API)."""

if __package__:  # imported by ComfyUI as a package (test runners may import this file on its own)
    from .nodes import comfy_entrypoint

    __all__ = ["comfy_entrypoint"]
