"""Reading `.safetensors` files: the header is validated before any tensor byte is touched.

Format (https://github.com/huggingface/safetensors, "Format" section): an unsigned little-endian
64-bit header length N, N bytes of UTF-8 JSON mapping tensor names to
`{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to the end of the header) and an
optional `"__metadata__"` string-to-string map, then the tensor bytes.

Tensors are read one at a time with `readinto` straight into their destination buffer, so loading
never holds the file twice in RAM (a memory map would leave every page it touched resident).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass

import torch

from ..errors import CheckpointError

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the limit of the reference implementation
MAX_DIMS = 8  # model weights have at most 5; more is damage, and keeps the size arithmetic small
MAX_DIM = 2**63 - 1  # sizes are int64 in torch

SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass(frozen=True, slots=True)
class TensorEntry:
    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int  # absolute byte offset in the file
    nbytes: int


def _fail(path: str, what: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a valid .safetensors file ({what}). It may be truncated or damaged: "
        "download it again, or pick another file."
    )


def _is_size(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_DIM


def _parse_entry(path: str, name: str, raw: object, data_size: int, data_start: int) -> TensorEntry:
    if not isinstance(raw, dict):
        raise _fail(path, f"entry {name!r} is not an object")
    name_of_dtype = raw.get("dtype")
    dtype = SAFETENSORS_DTYPES.get(name_of_dtype) if isinstance(name_of_dtype, str) else None
    if dtype is None:
        raise _fail(path, f"tensor {name!r} has unsupported dtype {raw.get('dtype')!r}")
    shape = raw.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_size(d) for d in shape):
        raise _fail(path, f"tensor {name!r} has an invalid shape {shape!r}")
    offsets = raw.get("data_offsets")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_size
    ):
        raise _fail(path, f"tensor {name!r} has data offsets {offsets!r} outside the {data_size}-byte data section")
    itemsize = torch.empty((), dtype=dtype).element_size()
    nbytes = math.prod(shape) * itemsize
    if offsets[1] - offsets[0] != nbytes:
        raise _fail(path, f"tensor {name!r} of shape {shape} needs {nbytes} bytes but spans {offsets[1] - offsets[0]}")
    return TensorEntry(dtype, tuple(shape), data_start + offsets[0], nbytes)


def _read_blob(path: str) -> tuple[bytes, int]:
    """(header bytes, file size); the length field is checked against the file before anything is read."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _fail(path, f"only {size} bytes long")
            n = int.from_bytes(head, "little")
            if n > size - 8:
                raise _fail(path, f"header length {n} exceeds the file size {size}")
            if n > MAX_HEADER_BYTES:
                raise _fail(path, f"header length {n} is above the {MAX_HEADER_BYTES}-byte limit")
            blob = f.read(n)
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e
    if len(blob) != n:
        raise _fail(path, f"header cut short ({len(blob)} of {n} bytes)")
    return blob, size


def _decode_json(path: str, blob: bytes) -> dict:
    def unique(pairs: list[tuple[str, object]]) -> dict:
        obj = dict(pairs)
        if len(obj) != len(pairs):  # json.loads would keep the last silently; readers disagree on which
            twice = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
            raise _fail(path, f"the name {twice!r} appears twice in one object")
        return obj

    try:
        header = json.loads(blob.decode("utf-8"), object_pairs_hook=unique)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        # ValueError covers JSONDecodeError and integers longer than Python's digit limit.
        raise _fail(path, f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise _fail(path, "header is not a JSON object")
    return header


def read_header(path: str) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """Parse and validate the header of `path`: (entries by name, metadata)."""
    blob, size = _read_blob(path)
    header = _decode_json(path, blob)
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _fail(path, "__metadata__ is not a string map")
    data_start = 8 + len(blob)
    data_size = size - data_start
    entries = {name: _parse_entry(path, name, raw, data_size, data_start) for name, raw in header.items()}
    spans = sorted((e.begin, e.begin + e.nbytes, name) for name, e in entries.items() if e.nbytes)
    for (_, end, a), (begin, _, b) in zip(spans, spans[1:]):
        if begin < end:
            raise _fail(path, f"tensors {a!r} and {b!r} overlap")
    return entries, metadata


class SafetensorsFile:
    """A validated `.safetensors` file; `get` reads one tensor into fresh memory on `device`."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.entries, self.metadata = read_header(self.path)
        self._file = open(self.path, "rb")

    def keys(self) -> list[str]:
        return list(self.entries)

    def shape(self, key: str) -> tuple[int, ...]:
        return self.entries[key].shape

    def dtype(self, key: str) -> torch.dtype:
        return self.entries[key].dtype

    def get(self, key: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> torch.Tensor:
        entry = self.entries[key]
        device = torch.device(device)
        pin = device.type == "cuda"
        raw = torch.empty(entry.shape, dtype=entry.dtype, pin_memory=pin)
        if entry.nbytes:
            self._file.seek(entry.begin)
            view = memoryview(raw.view(-1).view(torch.uint8).numpy())
            got = self._file.readinto(view)
            if got != entry.nbytes:
                raise _fail(self.path, f"tensor {key!r} is cut short ({got} of {entry.nbytes} bytes)")
        return raw.to(device=device, dtype=dtype or entry.dtype, non_blocking=pin)

    def close(self) -> None:
        self._file.close()


DTYPE_NAMES = {v: k for k, v in SAFETENSORS_DTYPES.items()}


def write_safetensors(
    path: str | os.PathLike,
    specs: dict[str, tuple[torch.dtype, tuple[int, ...]]],
    produce,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write tensors one at a time: `specs` name -> (dtype, shape), `produce(name)` -> that tensor.

    Memory stays at one tensor however large the file; the file appears under its name only when
    complete (written to `path + ".part"`, then renamed).
    """
    path = os.fspath(path)
    header: dict[str, object] = {"__metadata__": dict(metadata or {})} if metadata else {}
    offset = 0
    for name, (dtype, shape) in specs.items():
        nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # keep tensor data 8-byte aligned
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for name, (dtype, shape) in specs.items():
            tensor = produce(name).to("cpu", dtype).contiguous()
            if tuple(tensor.shape) != tuple(shape):
                raise ValueError(f"tensor {name!r} has shape {tuple(tensor.shape)}, declared {tuple(shape)}")
            f.write(memoryview(tensor.view(-1).view(torch.uint8).numpy()))
    os.replace(tmp, path)
