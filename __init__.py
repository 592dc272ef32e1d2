"""ComfyUI entry point of the SeedVR2 one-step restoration pack: registers the nodes only."""

if __package__:  # imported by ComfyUI as a package (test runners may import this file on its own)
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    __all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
