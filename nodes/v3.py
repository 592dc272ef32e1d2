"""ComfyUI V3 node classes built from the node specs: the one module of the pack importing `comfy_api`.

Imported only when ComfyUI asks the pack for its nodes (`comfy_entrypoint`), so the rest of nodes/ and
all of seedvr2_core import without ComfyUI.
"""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, InputImpl, io

from ..seedvr2_core import host
from .spec import CUSTOM_TYPES, NodeSpec, Socket, Widget

CORE_IO = {"IMAGE": io.Image, "MASK": io.Mask, "VIDEO": io.Video, "AUDIO": io.Audio, "LATENT": io.Latent}
IO_TYPES = {**CORE_IO, **{name: io.Custom(name) for name in CUSTOM_TYPES}}


def _widget(w: Widget) -> io.Input:
    tooltip = w.tooltip or None
    if w.kind == "INT":
        return io.Int.Input(w.name, default=w.default, min=w.min, max=w.max, step=w.step, tooltip=tooltip,
                            control_after_generate=w.control_after_generate or None)
    if w.kind == "FLOAT":
        return io.Float.Input(w.name, default=w.default, min=w.min, max=w.max, step=w.step, tooltip=tooltip)
    if w.kind == "BOOLEAN":
        return io.Boolean.Input(w.name, default=w.default, tooltip=tooltip)
    if w.kind == "STRING":
        return io.String.Input(w.name, default=w.default, tooltip=tooltip)
    return io.Combo.Input(w.name, options=w.option_list(), default=w.default, tooltip=tooltip)


def _input(item: Socket | Widget) -> io.Input:
    if isinstance(item, Widget):
        return _widget(item)
    return IO_TYPES[item.type].Input(item.name, tooltip=item.tooltip or None, optional=item.optional)


def schema(spec: NodeSpec) -> io.Schema:
    """The V3 schema of `spec` (combo options evaluated now, so new model files show up on refresh)."""
    return io.Schema(
        node_id=spec.node_id, display_name=spec.display_name, category=spec.category,
        description=spec.description, inputs=[_input(i) for i in spec.inputs],
        outputs=[IO_TYPES[o.type].Output(o.name, display_name=o.name, tooltip=o.tooltip or None)
                 for o in spec.outputs],
        is_output_node=spec.output_node,
    )


def _from_host(item: Socket | Widget, value):
    """A value as ComfyUI passes it -> what the spec's run takes (see spec.py)."""
    if isinstance(item, Socket) and item.type == "VIDEO" and value is not None:
        return value.get_stream_source()
    return value


def _to_host(socket: Socket, value):
    """A result of the spec's run -> the value ComfyUI passes on."""
    return InputImpl.VideoFromFile(value) if socket.type == "VIDEO" else value


def node_class(spec: NodeSpec) -> type[io.ComfyNode]:
    """The io.ComfyNode subclass running `spec`."""

    def define_schema(cls) -> io.Schema:
        return schema(spec)

    def execute(cls, **values) -> io.NodeOutput:
        args = {i.name: _from_host(i, values.get(i.name)) for i in spec.inputs}
        results = spec.run(**args)
        return io.NodeOutput(*(_to_host(o, r) for o, r in zip(spec.outputs, results)))

    return type(spec.node_id, (io.ComfyNode,), {
        "__doc__": spec.description, "__module__": __name__,
        "define_schema": classmethod(define_schema), "execute": classmethod(execute),
    })


class SeedVR2Extension(ComfyExtension):
    """The pack as ComfyUI's V3 API sees it."""

    def __init__(self, specs: tuple[NodeSpec, ...]):
        self.specs = specs

    async def on_load(self) -> None:
        host.register_model_folder()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [node_class(spec) for spec in self.specs]
