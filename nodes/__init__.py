"""ComfyUI nodes: thin wrappers that read widgets, call one core function and wrap the result."""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
