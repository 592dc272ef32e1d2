"""Reading `.pth` / `.pt` files, only through `torch.load(weights_only=True)`.

The official checkpoints (`seedvr2_ema_3b.pth`, `ema_vae.pth`, ...) are plain `torch.save`d state dicts
in PyTorch's zip format, and the official loader memory-maps them (FACTS.md section 1). A file is read
in three steps, each of which can refuse it with a CheckpointError naming it:

1. The zip directory is checked before torch sees the file: every record stored uncompressed (as
   `torch.save` writes them; torch's memory-mapped loader would read a compressed record's bytes as
   tensor data), within the file, named once, and the pickle record of bounded size. The legacy
   (pre-1.6) format is refused: its loader allocates every storage at the size the pickle declares
   before it checks the file holds that many bytes.
2. `torch.load(weights_only=True, mmap=True)`: a pickle that needs anything beyond tensors and plain
   containers is refused before any of its code can run; tensor storages are views of the mapped file.
3. The result must be a state dict: string keys, dense CPU tensors of a known dtype, none of which
   claims more bytes than the file has (a zero stride can make a view far larger than its storage),
   and storages of the sizes of the data records they are read from.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections import Counter

import torch

from ..errors import CheckpointError

# Wrappers some trainers put around the state dict.
WRAPPER_KEYS = ("state_dict", "model", "module", "ema", "params_ema")
MAX_RECORDS = 1 << 20  # a state dict of n tensors has n + 5 records
MAX_PICKLE_BYTES = 64 << 20  # the pickle of a 1128-tensor state dict is ~0.2 MB
TENSOR_DTYPES = frozenset({
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2,
    torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
})
# How torch's weights-only unpickler names a callable it refuses (allow-list miss or blocked module).
_DATA_RECORD = re.compile(r"^[^/]+/data/[^/]+$")
_UNSAFE_GLOBAL = re.compile(r"GLOBAL (\S+?)\.? (?:was not an allowed global|whose module)")


def _damaged(path: str, what: str) -> CheckpointError:
    return CheckpointError(
        f"{path} cannot be read as a PyTorch checkpoint ({what}). It may be truncated or damaged: "
        "download it again, or use a .safetensors copy of the model."
    )


def _not_a_zip(path: str) -> CheckpointError:
    """The error for a file that is not a zip archive: the legacy format, or not a checkpoint at all."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80":  # a pickle's protocol marker
        return CheckpointError(
            f"{path} is a pickle in PyTorch's legacy checkpoint format (torch.save before PyTorch 1.6, or with "
            "_use_new_zipfile_serialization=False). It is not read because that format allocates the sizes "
            "it declares before checking them. Re-save it with a current PyTorch, or use a .safetensors copy."
        )
    return _damaged(path, "it is not a zip archive, the format torch.save writes")


def _check_archive(path: str, size: int) -> Counter:
    """Refuse archives torch's reader would trust blindly (see the module docstring, step 1); returns the
    sizes of the tensor data records (`<archive>/data/<key>`) that are not empty."""
    if not zipfile.is_zipfile(path):
        raise _not_a_zip(path)
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, NotImplementedError) as e:
        raise _damaged(path, f"its zip directory is damaged: {e}") from None
    if len(records) > MAX_RECORDS:
        raise _damaged(path, f"{len(records)} records, more than a state dict has")
    names = Counter(r.filename for r in records)
    twice = [n for n, count in names.items() if count > 1]
    if twice:
        raise _damaged(path, f"record {twice[0]!r} appears twice")
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED or record.compress_size != record.file_size:
            raise _damaged(path, f"record {record.filename!r} is compressed; torch.save stores records as they are")
        if record.header_offset + record.file_size > size:
            raise _damaged(path, f"record {record.filename!r} runs past the end of the file")
    pickles = [r for r in records if r.filename.endswith("/data.pkl") or r.filename == "data.pkl"]
    if len(pickles) != 1 or pickles[0].file_size > MAX_PICKLE_BYTES:
        found = f"{pickles[0].file_size} bytes" if len(pickles) == 1 else f"{len(pickles)} records"
        raise _damaged(path, f"expected one data.pkl of at most {MAX_PICKLE_BYTES} bytes, found {found}")
    return Counter(r.file_size for r in records if _DATA_RECORD.match(r.filename) and r.file_size)


def _storage_sizes(obj: object) -> Counter:
    """The byte sizes of the distinct non-empty storages behind every tensor anywhere in `obj`."""
    sizes: dict[int, int] = {}
    seen: set[int] = set()
    todo = [obj]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor) and item.layout == torch.strided and item.device.type == "cpu":
            storage = item.untyped_storage()
            if storage.nbytes():
                sizes[storage.data_ptr()] = storage.nbytes()
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
    return Counter(sizes.values())


def _refused(path: str, error: pickle.UnpicklingError) -> CheckpointError:
    """The weights-only unpickler's refusal, without torch's advice to load the file unsafely."""
    original = str(error.__context__ or error)
    match = _UNSAFE_GLOBAL.search(original)
    if match:
        return CheckpointError(
            f"{path} was refused: unpickling it would call {match.group(1)}, which is not part of a plain state "
            "dict, so the file may be malicious. Do not load it with weights_only=False; use a .safetensors "
            "copy of this model instead."
        )
    reason = original.strip().splitlines()[-1][:200] if original.strip() else type(error).__name__
    return CheckpointError(
        f"{path} was refused: its pickle is not a plain state dict ({reason}). It may be damaged or malicious: "
        "download it again from the official source, or use a .safetensors copy of this model."
    )


def _unwrap(obj: object, path: str) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        if isinstance(obj, dict):
            inner = [obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)]
            if inner:
                obj = inner[0]
                continue
        break
    if isinstance(obj, torch.Tensor):
        return {"": obj}
    raise CheckpointError(
        f"{path} does not hold a state dict of tensors (found {type(obj).__name__}). "
        "Pick a model checkpoint (.safetensors, .pth or .gguf)."
    )


def _check_tensors(path: str, tensors: dict, size: int) -> None:
    """Step 3 of the module docstring."""
    for key, t in tensors.items():
        if not isinstance(key, str):
            raise _damaged(path, f"state dict key {key!r} is not a string")
        if t.layout != torch.strided or t.device.type != "cpu" or type(t) not in (torch.Tensor, torch.nn.Parameter):
            raise _damaged(path, f"tensor {key!r} is a {t.layout} {type(t).__name__} on {t.device}, not a plain one")
        if t.dtype not in TENSOR_DTYPES:
            raise _damaged(path, f"tensor {key!r} has dtype {t.dtype}, which model weights never use")
        if t.numel() * t.element_size() > size:
            raise _damaged(path, f"tensor {key!r} of shape {list(t.shape)} needs more bytes than the file has")


def load_torch_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Safely unpickle a tensor-only checkpoint (memory-mapped): name -> tensor; CheckpointError naming the file."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        records = _check_archive(path, size)
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        raise _refused(path, e) from None
    except Exception as e:  # noqa: BLE001 - torch.load's errors for damaged archives have no common type
        raise _damaged(path, f"{type(e).__name__}: {str(e).strip()[:300]}") from None
    tensors = _unwrap(obj, path)
    _check_tensors(path, tensors, size)
    # Memory-mapped storages are read at their record's offset for the size the pickle declares, whatever
    # the record's own size: a record cut short or grown would give the next record's bytes as weights.
    if _storage_sizes(obj) != records:
        raise _damaged(path, "its tensor data records do not have the sizes its pickle declares")
    return tensors


class StateDictSource:
    """An in-memory state dict behind the same interface as `SafetensorsFile`."""

    def __init__(self, tensors: dict[str, torch.Tensor], path: str = "<state dict>", metadata=None):
        self.path = path
        self.tensors = dict(tensors)
        self.metadata: dict[str, str] = dict(metadata or {})
        self._meta = {k: (tuple(t.shape), t.dtype) for k, t in self.tensors.items()}

    def keys(self) -> list[str]:
        return list(self._meta)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._meta[key][0]

    def dtype(self, key: str) -> torch.dtype:
        return self._meta[key][1]

    def get(self, key: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> torch.Tensor:
        t = self.tensors[key]
        return t.to(device=device, dtype=dtype or t.dtype)

    def close(self) -> None:
        self.tensors.clear()


class TorchFile(StateDictSource):
    """A `.pth` checkpoint; each tensor is copied out once and then forgotten, so the pages of the
    memory-mapped file can be released while the model fills up."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(load_torch_file(path), os.fspath(path))

    def get(self, key: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> torch.Tensor:
        t = self.tensors.pop(key)
        return t.to(device=device, dtype=dtype or t.dtype, copy=True)
