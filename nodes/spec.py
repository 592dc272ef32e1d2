"""The nodes as plain data: inputs, widgets, outputs and the function each one runs.

Why data: the node layer must be testable without ComfyUI (its `comfy_api` package is not installed
where the tests run, and stubbing it would test the stub). Each node is a `NodeSpec` whose `run` is an
ordinary function of its input names; `validate` checks a spec against what ComfyUI's V3 schema and
frontend accept, and `nodes/v3.py` turns specs into `comfy_api.latest.io.ComfyNode` classes in one place.
Tests call `run` on tiny real models and compare its results with the declared output types; where a
real ComfyUI is available they also build the V3 classes and let ComfyUI validate them.

Values crossing the boundary that ComfyUI represents with its own classes are converted by v3.py only:
a VIDEO input reaches `run` as what `VideoInput.get_stream_source()` returns (a path or a BytesIO),
and a VIDEO output leaves `run` as the path of a video file (wrapped as `VideoFromFile`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Sequence

WIDGET_KINDS = ("INT", "FLOAT", "BOOLEAN", "STRING", "COMBO")
CORE_TYPES = ("IMAGE", "MASK", "VIDEO", "AUDIO", "LATENT")
CUSTOM_TYPES = {
    "SEEDVR2_DIT": "a loaded SeedVR2 DiT (seedvr2_core.handles.DiTHandle)",
    "SEEDVR2_VAE": "a loaded SeedVR2 VAE (seedvr2_core.handles.VAEHandle)",
    "SEEDVR2_LATENT": "SeedVR2 latents of a clip with what decoding needs (seedvr2_core.clip.ClipLatent)",
}
PREFIX = "SeedVR2"
# Node ids registered by other packs users may have installed next to ours: ComfyUI's native SeedVR2 nodes
# (comfy_extras/nodes_seedvr.py, ../shared/HOST.md) and the older numz/ComfyUI-SeedVR2_VideoUpscaler pack.
TAKEN_IDS = frozenset({
    "SeedVR2Preprocess", "SeedVR2Conditioning", "SeedVR2TemporalChunk", "SeedVR2TemporalMerge",
    "SeedVR2PostProcessing", "SeedVR2", "SeedVR2BlockSwap", "SeedVR2ExtraArgs", "SeedVR2VideoUpscaler",
    "SeedVR2LoadDiTModel", "SeedVR2LoadVAEModel", "SeedVR2TorchCompileSettings",
})
INT_LIMIT = 0xFFFFFFFFFFFFFFFF  # the largest INT the frontend's seed widgets take


@dataclass(frozen=True)
class Socket:
    """A connection of type `type` (IMAGE, VIDEO, SEEDVR2_DIT, ...)."""

    name: str
    type: str
    tooltip: str = ""
    optional: bool = False


@dataclass(frozen=True)
class Widget:
    """A widget value; combo `options` may be a callable, evaluated each time ComfyUI asks for the schema."""

    name: str
    kind: str
    default: object = None
    tooltip: str = ""
    min: float | None = None
    max: float | None = None
    step: float | None = None
    options: Sequence | Callable[[], Sequence] | None = None
    control_after_generate: bool = False

    def option_list(self) -> list:
        return list(self.options() if callable(self.options) else self.options or [])


@dataclass(frozen=True)
class NodeSpec:
    """One node: its id, what it shows, and `run(**inputs) -> tuple of outputs`."""

    node_id: str
    display_name: str
    description: str
    inputs: tuple[Socket | Widget, ...]
    outputs: tuple[Socket, ...]
    run: Callable[..., tuple]
    category: str = "SeedVR2"
    output_node: bool = False
    widgets: tuple[Widget, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "widgets", tuple(i for i in self.inputs if isinstance(i, Widget)))

    def defaults(self) -> dict[str, object]:
        """Every widget's default value (a combo without one: its first option)."""
        return {w.name: w.default if w.default is not None else next(iter(w.option_list()), None)
                for w in self.widgets}


def _number_problems(w: Widget) -> list[str]:
    problems = []
    number = float if w.kind == "FLOAT" else int
    if not isinstance(w.default, number) or isinstance(w.default, bool):
        problems.append(f"default {w.default!r} is not {number.__name__}")
    elif (w.min is not None and w.default < w.min) or (w.max is not None and w.default > w.max):
        problems.append(f"default {w.default} outside [{w.min}, {w.max}]")
    if w.min is not None and w.max is not None and w.min > w.max:
        problems.append(f"min {w.min} > max {w.max}")
    if w.step is not None and w.step <= 0:
        problems.append(f"step {w.step} is not positive")
    if w.kind == "INT" and any(v is not None and abs(v) > INT_LIMIT for v in (w.min, w.max)):
        problems.append("bounds beyond the frontend's 64-bit integers")
    return problems


def widget_problems(w: Widget) -> list[str]:
    """What is wrong with one widget (empty: nothing)."""
    if w.kind not in WIDGET_KINDS:
        return [f"unknown widget kind {w.kind!r}"]
    if w.kind in ("INT", "FLOAT"):
        return _number_problems(w)
    if w.kind == "BOOLEAN" and not isinstance(w.default, bool):
        return [f"default {w.default!r} is not a bool"]
    if w.kind == "STRING" and not isinstance(w.default, str):
        return [f"default {w.default!r} is not a string"]
    if w.kind == "COMBO":
        options = w.option_list()
        if w.options is None or not all(isinstance(o, str) for o in options):
            return ["combo options must be strings"]
        if w.default is not None and w.default not in options:
            return [f"default {w.default!r} not among the options {options}"]
    return []


def problems(spec: NodeSpec) -> list[str]:
    """Every way `spec` breaks a rule of ComfyUI's schema or of this pack (empty: valid)."""
    found = []
    if not spec.node_id.startswith(PREFIX) or spec.node_id in TAKEN_IDS:
        found.append(f"id {spec.node_id!r} must start with {PREFIX} and not be one of {sorted(TAKEN_IDS)}")
    for names in ([i.name for i in spec.inputs], [o.name for o in spec.outputs]):
        if len(set(names)) != len(names) or not all(n.isidentifier() for n in names):
            found.append(f"input names and output names must be distinct identifiers: {names}")
    for socket in [i for i in spec.inputs if isinstance(i, Socket)] + list(spec.outputs):
        if socket.type not in CORE_TYPES and socket.type not in CUSTOM_TYPES:
            found.append(f"{socket.name}: unknown type {socket.type!r}")
    for w in spec.widgets:
        found += [f"widget {w.name}: {p}" for p in widget_problems(w)]
    parameters = list(inspect.signature(spec.run).parameters)
    if parameters != [i.name for i in spec.inputs]:
        found.append(f"run takes {parameters}, the inputs are {[i.name for i in spec.inputs]}")
    if not spec.outputs and not spec.output_node:
        found.append("a node without outputs must be an output node")
    return found


def accepts(w: Widget, value: object) -> bool:
    """Would ComfyUI's prompt validation accept `value` for widget `w`?"""
    if w.kind == "COMBO":
        return value in w.option_list()
    if w.kind in ("INT", "FLOAT"):
        number = (int,) if w.kind == "INT" else (int, float)
        if not isinstance(value, number) or isinstance(value, bool):
            return False
        return (w.min is None or value >= w.min) and (w.max is None or value <= w.max)
    return isinstance(value, bool if w.kind == "BOOLEAN" else str)
