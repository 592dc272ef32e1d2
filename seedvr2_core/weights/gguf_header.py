"""A bounded, validating walk over a GGUF file's header: nothing is allocated or looped over before
its size or count has been checked against the bytes the file actually has.

Format (GGUF specification, ggml `docs/gguf.md`; little-endian): magic `GGUF`, uint32 version (2 or 3),
uint64 tensor count, uint64 key/value count; each key/value = string key, uint32 value type, value
(a string is a uint64 length + UTF-8 bytes; an array is a uint32 element type, a uint64 count, then
the elements); each tensor info = string name, uint32 n_dims (at most 4), n_dims uint64 dims
(innermost first), uint32 GGML type, uint64 offset. Tensor data starts at the end of the infos rounded
up to `general.alignment` (uint32, power of two, default 32); every offset is relative to that start
and a multiple of the alignment.

Why not `gguf.GGUFReader`: it memory-maps the file and builds one numpy view per array element before
checking anything, so a small hostile file makes it allocate a large multiple of its size (measured in
tests/test_gguf_hostile.py) and loop for as long as a forged count says. The type codes and block
sizes used here come from the `gguf` package itself.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGMLQuantizationType, GGUFValueType

from ..errors import CheckpointError
from .dequant import BLOCK_SIZES

PLAIN_TYPES = ("F32", "F16", "BF16")
SUPPORTED_TYPES = PLAIN_TYPES + tuple(BLOCK_SIZES)
ORIG_SHAPE_PREFIX = "comfy.gguf.orig_shape."  # ComfyUI-GGUF's key for a tensor's logical shape

MAX_TENSORS = 1 << 16
MAX_KEYS = 1 << 16
MAX_NAME_BYTES = 1 << 16
MAX_STRING_BYTES = 1 << 26  # also the limit for one numeric array
MAX_LIST_ITEMS = 1 << 20  # strings and nested arrays, which cost a Python object each
MAX_ARRAY_DEPTH = 3
MAX_DIMS = 4
MAX_DIM = 2**63 - 1  # dims are int64 in ggml and torch

_SCALARS = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?", GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}
_NUMPY = {t: np.dtype(f) for t, f in _SCALARS.items()}


@dataclass(frozen=True)
class GGUFTensorInfo:
    name: str
    ggml_type: str  # "F16", "Q4_K", ...
    dims: tuple[int, ...]  # as stored: innermost first
    shape: tuple[int, ...]  # logical (torch order): orig_shape metadata, else reversed dims
    begin: int  # absolute byte offset of the data
    nbytes: int


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    alignment: int
    fields: dict[str, object]  # metadata values: int / float / bool / str / numpy array / list
    field_types: dict[str, tuple[int, ...]]  # (value type,) or (ARRAY, element type)
    tensors: dict[str, GGUFTensorInfo]


def fail(path: str, what: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a valid GGUF file ({what}). It may be truncated or damaged: "
        "download it again, or use a .safetensors copy of the model."
    )


class _Cursor:
    """Sequential reads that refuse to go past the end of the file."""

    def __init__(self, f: BinaryIO, size: int, path: str):
        self.f, self.size, self.path, self.pos, self.items = f, size, path, 0, 0

    def remaining(self) -> int:
        return self.size - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n > self.remaining():
            raise fail(self.path, f"{what} needs {n} bytes at offset {self.pos}, past the end of the {self.size}-byte file")
        data = self.f.read(n)
        if len(data) != n:
            raise fail(self.path, f"{what} is cut short at offset {self.pos}")
        self.pos += n
        return data

    def scalar(self, fmt: str, what: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str, limit: int) -> str:
        n = self.scalar("<Q", what)
        if n > limit:
            raise fail(self.path, f"{what} claims {n} bytes (limit {limit})")
        try:
            return self.take(n, what).decode("utf-8")
        except UnicodeDecodeError:
            raise fail(self.path, f"{what} is not UTF-8") from None

    def count_items(self, n: int, what: str) -> None:
        self.items += n
        if self.items > MAX_LIST_ITEMS:
            raise fail(self.path, f"{what}: more than {MAX_LIST_ITEMS} list items in the metadata")


def _value(cur: _Cursor, vtype: int, key: str, depth: int) -> tuple[object, tuple[int, ...]]:
    """(value, type path) of one metadata value of type `vtype`."""
    if vtype in _SCALARS:
        return cur.scalar(_SCALARS[vtype], f"value of {key!r}"), (vtype,)
    if vtype == GGUFValueType.STRING:
        return cur.string(f"string value of {key!r}", MAX_STRING_BYTES), (vtype,)
    if vtype != GGUFValueType.ARRAY:
        raise fail(cur.path, f"metadata {key!r} has an unknown value type {vtype}")
    if depth >= MAX_ARRAY_DEPTH:
        raise fail(cur.path, f"metadata {key!r} nests arrays more than {MAX_ARRAY_DEPTH} deep")
    etype = cur.scalar("<I", f"array type of {key!r}")
    count = cur.scalar("<Q", f"array length of {key!r}")
    if etype in _NUMPY:
        itemsize = _NUMPY[etype].itemsize
        if count > min(cur.remaining(), MAX_STRING_BYTES) // itemsize:
            raise fail(cur.path, f"array {key!r} claims {count} items, more than the file holds (or 64 MiB)")
        return np.frombuffer(cur.take(count * itemsize, f"array {key!r}"), _NUMPY[etype]), (vtype, etype)
    if etype not in (GGUFValueType.STRING, GGUFValueType.ARRAY):
        raise fail(cur.path, f"array {key!r} has an unknown element type {etype}")
    if count > cur.remaining() // 8:  # every string or array takes at least 8 bytes
        raise fail(cur.path, f"array {key!r} claims {count} items, more than the file holds")
    cur.count_items(count, f"array {key!r}")
    items = [_value(cur, etype, key, depth + 1)[0] for _ in range(count)]
    return items, (vtype, etype)


def _read_prelude(cur: _Cursor) -> tuple[int, int, int]:
    """(version, tensor count, key/value count), each checked."""
    magic = cur.take(4, "magic")
    if magic != b"GGUF":
        raise fail(cur.path, f"it starts with {magic!r}, not b'GGUF'")
    version = cur.scalar("<I", "version")
    if version not in (2, 3):
        if version & 0xFFFF == 0 and struct.unpack(">I", struct.pack("<I", version))[0] in (2, 3):
            raise fail(cur.path, "big-endian GGUF files are not supported")
        raise fail(cur.path, f"version {version} is not supported (only 2 and 3)")
    n_tensors = cur.scalar("<Q", "tensor count")
    n_keys = cur.scalar("<Q", "metadata count")
    if n_tensors > MAX_TENSORS or n_tensors * 32 > cur.remaining():
        raise fail(cur.path, f"tensor count {n_tensors} is impossible for a {cur.size}-byte file")
    if n_keys > MAX_KEYS or n_keys * 13 > cur.remaining():
        raise fail(cur.path, f"metadata count {n_keys} is impossible for a {cur.size}-byte file")
    return version, n_tensors, n_keys


def _read_tensor_info(cur: _Cursor) -> tuple[str, tuple[int, ...], str, int]:
    name = cur.string("tensor name", MAX_NAME_BYTES)
    n_dims = cur.scalar("<I", f"dimension count of {name!r}")
    if not 1 <= n_dims <= MAX_DIMS:
        raise fail(cur.path, f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
    dims = struct.unpack(f"<{n_dims}Q", cur.take(8 * n_dims, f"dimensions of {name!r}"))
    if max(dims) > MAX_DIM:
        raise fail(cur.path, f"tensor {name!r} has a dimension beyond the int64 range ({max(dims)})")
    code = cur.scalar("<I", f"type of {name!r}")
    try:
        ggml_type = GGMLQuantizationType(code).name
    except ValueError:
        raise fail(cur.path, f"tensor {name!r} has an unknown GGML type code {code}") from None
    if ggml_type not in SUPPORTED_TYPES:
        raise CheckpointError(
            f"{cur.path}: tensor {name!r} is stored as {ggml_type}, which this loader does not decode "
            f"(supported: {', '.join(SUPPORTED_TYPES)}). Use a Q8_0/Q6_K/Q5_K/Q4_K/Q5_0/Q4_0 file, or convert "
            "the original model with `python -m seedvr2_core.convert`."
        )
    return name, dims, ggml_type, cur.scalar("<Q", f"data offset of {name!r}")


def _alignment(path: str, fields: dict, types: dict) -> int:
    if "general.alignment" not in fields:
        return GGUF_DEFAULT_ALIGNMENT
    value = fields["general.alignment"]
    if types["general.alignment"] != (GGUFValueType.UINT32,) or value == 0 or value & (value - 1):
        raise fail(path, f"general.alignment {value!r} is not a power of two stored as uint32")
    return value


def _logical_shape(path: str, name: str, dims: tuple[int, ...], fields: dict) -> tuple[int, ...]:
    orig = fields.get(ORIG_SHAPE_PREFIX + name)
    if orig is None:
        return tuple(reversed(dims))
    numel = math.prod(dims)
    if (
        not isinstance(orig, np.ndarray) or orig.dtype.kind not in "iu" or not 1 <= len(orig) <= 8
        or (orig < 0).any() or (orig > MAX_DIM).any() or math.prod(int(v) for v in orig) != numel
    ):
        raise fail(path, f"{ORIG_SHAPE_PREFIX}{name} = {orig!r} is not a shape of {numel} values")
    return tuple(int(v) for v in orig)


def _place_tensors(path: str, size: int, infos: list, data_start: int, alignment: int, fields: dict) -> dict:
    tensors: dict[str, GGUFTensorInfo] = {}
    for name, dims, ggml_type, offset in infos:
        if name in tensors:
            raise fail(path, f"tensor {name!r} appears twice")
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[ggml_type]]
        if dims[0] % block:
            raise fail(path, f"tensor {name!r} has rows of {dims[0]} values, not a multiple of the {ggml_type} block of {block}")
        nbytes = math.prod(dims) // block * type_size
        begin = data_start + offset
        if offset % alignment or begin + nbytes > size:
            raise fail(path, f"tensor {name!r} ({nbytes} bytes at data offset {offset}) is misaligned or runs past the end")
        shape = _logical_shape(path, name, dims, fields)
        tensors[name] = GGUFTensorInfo(name, ggml_type, dims, shape, begin, nbytes)
    spans = sorted((t.begin, t.begin + t.nbytes, t.name) for t in tensors.values() if t.nbytes)
    for (_, end, a), (begin, _, b) in zip(spans, spans[1:]):
        if begin < end:
            raise fail(path, f"tensors {a!r} and {b!r} overlap")
    return tensors


def read_gguf_header(path: str | os.PathLike) -> GGUFHeader:
    """Parse and validate the header of the GGUF file at `path` (raises CheckpointError naming it)."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            cur = _Cursor(f, size, path)
            version, n_tensors, n_keys = _read_prelude(cur)
            fields: dict[str, object] = {}
            types: dict[str, tuple[int, ...]] = {}
            for _ in range(n_keys):
                key = cur.string("metadata key", MAX_NAME_BYTES)
                if key in fields:
                    raise fail(path, f"metadata key {key!r} appears twice")
                fields[key], types[key] = _value(cur, cur.scalar("<I", f"value type of {key!r}"), key, 0)
            infos = [_read_tensor_info(cur) for _ in range(n_tensors)]
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e
    alignment = _alignment(path, fields, types)
    data_start = -(-cur.pos // alignment) * alignment
    tensors = _place_tensors(path, size, infos, data_start, alignment, fields)
    return GGUFHeader(version, alignment, fields, types, tensors)
