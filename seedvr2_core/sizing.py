"""Output sizes: what the user asks for, and the plan that gets a frame there (pure arithmetic, no tensors).

A frame goes: input -> resize (antialiased bicubic, aspect kept) to `resized_hw` -> keep `crop_box` of it
-> pad bottom/right to `padded_hw` (multiples of 16: what the VAE and DiT see) -> model -> keep
`output_box` of the model frame (`crop_back`) -> `output_hw`. All sizes are (height, width).

Size requests (one of; nothing at all keeps the input size):
* `short_side` (optionally with `long_side_max`): the short side becomes exactly that, the long side keeps
  the aspect; `long_side_max` then shrinks both if the long side is longer. `long_side_max` alone caps
  the input size.
* `width` and/or `height`: one of them keeps the aspect; both give exactly that size.
* `scale`: both sides times the factor (optionally capped by `long_side_max`).
* `area` (pixels): the official SeedVR2 resize (`NaResize(mode="area")` of the official inference
  scripts, FACTS.md section 6 step 2): scale sqrt(area / (H*W)), sides rounded with Python's round.
  `SizeRequest.official(res_h, res_w)` = area res_h*res_w with fit "crop", the official pipeline.

Fits (how the size reaches multiples of 16):
* `pad` (default): pad bottom/right by reflection, crop back afterwards: every input pixel is kept and
  the output is exactly the requested size. Exact width x height must then match the input's aspect up
  to pixel rounding; otherwise InputError (we never stretch).
* `crop`: the official `DivisibleCrop`: centre crop to multiples of 16 (offsets int(round(diff / 2)),
  FACTS.md section 6 step 4), output = the size rounded down to multiples of 16. For exact width x height
  the frame is scaled to cover that box and centre-cropped to it; the output is exactly width x height
  (padded to multiples of 16 internally if needed).

Our sizes round halves up, using exact fractions (no float surprises); only `area` uses the official
float arithmetic.
"""

from __future__ import annotations

import math
import numbers
import operator
from dataclasses import dataclass
from fractions import Fraction

from .errors import InputError

MULTIPLE = 16  # VAE x8 and DiT patch x2
MIN_SIDE = 16  # smaller outputs would be mostly padding
MAX_SIDE = 16384  # larger sides are a typo (scale 100?) rather than a wish: one frame would need tens of GB
FITS = ("pad", "crop")


@dataclass(frozen=True)
class Box:
    """A rectangle of a frame: rows [top, top + height), columns [left, left + width)."""

    top: int
    left: int
    height: int
    width: int

    @property
    def hw(self) -> tuple[int, int]:
        return self.height, self.width

    def slices(self) -> tuple[slice, slice]:
        """(rows, columns) to index the last two axes: `x[..., rows, cols]`."""
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


@dataclass(frozen=True)
class SizePlan:
    """How one input size is brought to the model and back (see the module docstring); sizes are (h, w)."""

    input_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    crop_box: Box  # kept part of the resized frame (the whole frame unless fit == "crop")
    padded_hw: tuple[int, int]  # model frame size, multiples of 16; padding is at the bottom/right
    output_box: Box  # returned part of the model frame
    fit: str

    @property
    def output_hw(self) -> tuple[int, int]:
        return self.output_box.hw

    @property
    def pad_bottom_right(self) -> tuple[int, int]:
        return self.padded_hw[0] - self.crop_box.height, self.padded_hw[1] - self.crop_box.width

    def describe(self) -> str:
        """One line for logs, sizes as width x height."""
        def wh(hw: tuple[int, int]) -> str:
            return f"{hw[1]}x{hw[0]}"

        return (
            f"{wh(self.input_hw)} -> resize {wh(self.resized_hw)} -> {self.fit} {wh(self.crop_box.hw)} "
            f"-> model {wh(self.padded_hw)} -> output {wh(self.output_hw)}"
        )


def _whole(name: str, value: object, low: int = MIN_SIDE, high: int = MAX_SIDE, unit: str = "pixels") -> int:
    """`value` as an int in [low, high] (ints and numpy ints; not floats or bools), else InputError."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or not low <= number <= high:
        raise InputError(f"{name}={value!r}: give a whole number of {unit} from {low} to {high}")
    return number


@dataclass(frozen=True)
class SizeRequest:
    """What the user asked for; see the module docstring for the modes and fits."""

    short_side: int | None = None
    long_side_max: int | None = None
    width: int | None = None
    height: int | None = None
    scale: float | None = None
    area: int | None = None
    fit: str = "pad"

    def __post_init__(self) -> None:
        for name in ("short_side", "long_side_max", "width", "height"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _whole(name, value))
        if self.area is not None:
            object.__setattr__(self, "area", _whole("area", self.area, MIN_SIDE**2, MAX_SIDE**2))
        if self.scale is not None:
            is_number = isinstance(self.scale, numbers.Real) and not isinstance(self.scale, bool)
            if not is_number or not 0 < self.scale < math.inf:
                raise InputError(f"scale={self.scale!r}: give a positive finite factor, e.g. 2 or 0.5")
            object.__setattr__(self, "scale", float(self.scale))
        if self.fit not in FITS:
            raise InputError(f"fit={self.fit!r}: use one of {', '.join(FITS)}")
        self._check_combination()

    def _check_combination(self) -> None:
        given = [n for n in ("short_side", "width", "height", "scale", "area") if getattr(self, n) is not None]
        modes = {"width" if n == "height" else n for n in given}
        if len(modes) > 1:
            raise InputError(
                f"size request sets {' and '.join(given)}: give only one of short_side, width/height, scale, area"
            )
        if self.long_side_max is not None and modes & {"width", "area"}:
            raise InputError(
                f"long_side_max={self.long_side_max} cannot be combined with {given[0]}: "
                "it caps short_side, scale or the input size"
            )

    def describe(self) -> str:
        """The fields that were set, e.g. "short_side=1080, fit='pad'"."""
        fields = ("short_side", "long_side_max", "width", "height", "scale", "area")
        parts = [f"{n}={getattr(self, n)!r}" for n in fields if getattr(self, n) is not None]
        return ", ".join(parts + [f"fit={self.fit!r}"])

    @classmethod
    def official(cls, res_h: int = 720, res_w: int = 1280) -> SizeRequest:
        """The official inference scripts' `--res_h/--res_w`: area resize, centre crop to multiples of 16."""
        return cls(area=_whole("res_h", res_h) * _whole("res_w", res_w), fit="crop")


def round_half_up(value: Fraction) -> int:
    """Nearest integer to an exact fraction, halves rounded up (our modes; the official area mode uses round)."""
    return math.floor(value + Fraction(1, 2))


def _keep_aspect(size_in: tuple[int, int], side: int, axis: int) -> tuple[int, int]:
    """Size whose side `axis` (0 = height, 1 = width) is `side`, the other side scaled along."""
    other = round_half_up(Fraction(size_in[1 - axis] * side, size_in[axis]))
    return (side, other) if axis == 0 else (other, side)


def official_area_hw(height: int, width: int, area: int) -> tuple[int, int]:
    """Resized (h, w) of the official AreaResize, in its own float arithmetic (FACTS.md section 6 step 2)."""
    max_area = (area**0.5) ** 2  # the scripts pass resolution = (res_h * res_w) ** 0.5, squared again inside
    scale = math.sqrt(max_area / (height * width))
    return round(height * scale), round(width * scale)


def aspect_matches(size_in: tuple[int, int], size_out: tuple[int, int]) -> bool:
    """True if one scale factor maps both sides of `size_in` to `size_out` up to rounding both sizes to pixels.

    Each side may be off by half a pixel at the input and at the output: |out - in * s| <= (1 + s) / 2.
    """
    low, high = Fraction(0), None
    for side_in, side_out in zip(size_in, size_out):
        low = max(low, Fraction(2 * side_out - 1, 2 * side_in + 1))
        bound = Fraction(2 * side_out + 1, 2 * side_in - 1)
        high = bound if high is None else min(high, bound)
    return low <= high


def _resized_hw(request: SizeRequest, size_in: tuple[int, int]) -> tuple[int, int]:
    """The aspect-keeping resize target of every mode (for exact width x height with fit crop: the cover size)."""
    h, w = size_in
    if request.area is not None:
        return official_area_hw(h, w, request.area)
    if request.width is not None and request.height is not None:
        target = (request.height, request.width)
        if request.fit == "pad":
            return target
        cover_axis = 1 if request.width * h >= request.height * w else 0
        return _keep_aspect(size_in, target[cover_axis], cover_axis)
    if request.width is not None:
        return _keep_aspect(size_in, request.width, 1)
    if request.height is not None:
        return _keep_aspect(size_in, request.height, 0)
    if request.short_side is not None:
        size = _keep_aspect(size_in, request.short_side, 0 if h <= w else 1)
    elif request.scale is not None:
        factor = Fraction(request.scale)
        size = (round_half_up(h * factor), round_half_up(w * factor))
    else:
        size = size_in
    if request.long_side_max is not None and max(size) > request.long_side_max:
        size = _keep_aspect(size_in, request.long_side_max, 0 if h > w else 1)
    return size


def _wh(hw: tuple[int, int]) -> str:
    return f"{hw[1]}x{hw[0]}"


def _check_request_fits(request: SizeRequest, size_in: tuple[int, int], resized: tuple[int, int]) -> None:
    exact = request.width is not None and request.height is not None
    if exact and request.fit == "pad" and not aspect_matches(size_in, resized):
        height_only = _keep_aspect(size_in, request.height, 0)
        raise InputError(
            f"width x height {_wh(resized)} has another aspect ratio than the input {_wh(size_in)}; "
            f"fitting it would stretch the picture. Use fit='crop' to fill {_wh(resized)} by cropping, "
            f"or give only the height (height={request.height} gives {_wh(height_only)}) or only the width"
        )
    keeps_size = all(getattr(request, n) is None for n in ("short_side", "long_side_max", "width", "height",
                                                            "scale", "area"))
    if keeps_size and min(size_in) < MIN_SIDE:
        raise InputError(
            f"the input is {_wh(size_in)}, below the {MIN_SIDE} pixels per side SeedVR2 works on, and no output size "
            f"was asked for: ask for one (a short side / resolution of {MIN_SIDE} or more) to upscale it first"
        )
    if min(resized) < MIN_SIDE or max(resized) > MAX_SIDE:
        raise InputError(
            f"the request ({request.describe()}) turns the input {_wh(size_in)} into {_wh(resized)}: "
            f"every side must be {MIN_SIDE} to {MAX_SIDE} pixels; ask for a size in that range"
        )


def _centre_box(outer: tuple[int, int], inner: tuple[int, int]) -> Box:
    # torchvision's center_crop offsets, as used by the official DivisibleCrop (Python's round).
    top = int(round((outer[0] - inner[0]) / 2.0))
    left = int(round((outer[1] - inner[1]) / 2.0))
    return Box(top, left, inner[0], inner[1])


def _round_up(n: int) -> int:
    return -(-n // MULTIPLE) * MULTIPLE


def plan_size(request: SizeRequest, height: int, width: int) -> SizePlan:
    """Input frame size (height, width) -> the SizePlan that `request` asks for; InputError if impossible."""
    size_in = (_whole("input height", height, 1, 1 << 20), _whole("input width", width, 1, 1 << 20))
    resized = _resized_hw(request, size_in)
    _check_request_fits(request, size_in, resized)
    if request.fit == "pad":
        kept = resized
    elif request.width is not None and request.height is not None:
        kept = (request.height, request.width)
    else:
        kept = (resized[0] - resized[0] % MULTIPLE, resized[1] - resized[1] % MULTIPLE)
    crop_box = _centre_box(resized, kept)
    padded = (_round_up(kept[0]), _round_up(kept[1]))
    return SizePlan(size_in, resized, crop_box, padded, Box(0, 0, kept[0], kept[1]), request.fit)


def padded_frame_count(frames: int) -> int:
    """Frame count T -> official 4n+1 count after repeating the last frame (1 stays 1; 2..4 -> 5)."""
    frames = _whole("frame count", frames, 1, 1 << 40, unit="frames")
    if frames == 1:
        return 1
    return max(5, -(-(frames - 1) // 4) * 4 + 1)
