"""Hostile, damaged and odd .pth files: code in a pickle never runs, and every file that is not a plain
state dict fails with CheckpointError naming it.

Hypothesis then feeds random bytes, mutations of a whole valid file and valid archives around a mutated
pickle through the reader under tests/hostile.py's watch (only CheckpointError, within 1 s, bounded
Python and native allocations). PYTHON_FACTOR: the Python zip directory (a ZipInfo per 46+ bytes of
directory) and the unpickled objects; measured peaks stay far below it.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import tempfile
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hostile import check_hostile, fuzz_settings, mutated
from seedvr2_core.errors import CheckpointError
from seedvr2_core.weights import open_source
from seedvr2_core.weights.torch_file import load_torch_file

PYTHON_FACTOR = 32


def torch_zip(records: dict[str, bytes]) -> bytes:
    """An archive like torch.save's: records stored, each record's data 64-byte aligned (by an extra field)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        for name, data in records.items():
            info = zipfile.ZipInfo(name)
            start = buf.tell() + 30 + len(name.encode()) + 4  # local header, name, extra field header
            pad = -start % 64
            info.extra = struct.pack("<HH", 0x4246, pad) + b"\0" * pad
            archive.writestr(info, data)
    return buf.getvalue()


def records_of(blob: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def saved(obj, **kwargs) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


# -- code in the pickle ----------------------------------------------------------------------------------

class Payload:
    """Unpickling calls `action(marker)`, which creates the marker file or folder."""

    def __init__(self, action, marker: str):
        self.action, self.marker = action, marker

    def __reduce__(self):
        return self.action, (self.marker, "w") if self.action is open else (self.marker,)


def unsafe_torch_load(path: Path) -> None:
    torch.load(path, weights_only=False)


def unsafe_pickle_load(path: Path) -> None:
    with open(path, "rb") as f:
        pickle.load(f)


def hostile_files(marker: str) -> dict[str, tuple[bytes, object]]:
    """name -> (file bytes, the unsafe loader that would run the payload)."""
    weights = {"w": torch.ones(2)}
    return {
        "open() in a torch.save archive": (saved({**weights, "x": Payload(open, marker)}), unsafe_torch_load),
        "os.mkdir in a torch.save archive": (saved({**weights, "x": Payload(os.mkdir, marker)}), unsafe_torch_load),
        "deep inside a wrapper": (saved({"state_dict": {**weights, "meta": [{"x": Payload(open, marker)}]}}),
                                  unsafe_torch_load),
        "a plain pickle named .pth": (pickle.dumps({"x": Payload(open, marker)}), unsafe_pickle_load),
        "the legacy torch.save format": (saved({**weights, "x": Payload(open, marker)},
                                               _use_new_zipfile_serialization=False), unsafe_torch_load),
    }


@pytest.mark.parametrize("case", sorted(hostile_files("m")))
def test_code_in_a_pickle_never_runs(tmp_path, case):
    marker = tmp_path / "marker"
    path = tmp_path / "model.pth"
    blob, unsafe_load = hostile_files(str(marker))[case]
    path.write_bytes(blob)
    with pytest.raises(CheckpointError, match=str(path).replace(".", r"\.")) as caught:
        open_source(path)
    assert not marker.exists(), "the pickle's code ran"
    assert "refused" in str(caught.value) or "legacy" in str(caught.value)
    assert "weights_only=False;" not in str(caught.value).replace("Do not load it with weights_only=False;", "")
    unsafe_load(path)  # the payload is real: an unsafe load of the same bytes runs it
    assert marker.exists()


def test_a_refused_global_is_named_and_unsafe_loading_is_not_advised(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(hostile_files(str(tmp_path / "marker"))["open() in a torch.save archive"][0])
    with pytest.raises(CheckpointError) as caught:
        load_torch_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path} was refused: unpickling it would call {open.__module__}.open,")
    assert "Do not load it with weights_only=False" in message and "Re-running" not in message


# -- damaged and odd files -------------------------------------------------------------------------------

VALID = {"a.weight": torch.arange(6.0).reshape(2, 3), "a.bias": torch.ones(4, dtype=torch.float16)}


def deflated(blob: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in records_of(blob).items():
            archive.writestr(name, data)
    return buf.getvalue()


def with_record(blob: bytes, name_end: str, data: bytes | None) -> bytes:
    """The archive with the record ending in `name_end` replaced (or removed when `data` is None)."""
    records = records_of(blob)
    name = next(n for n in records if n.endswith(name_end))
    if data is None:
        del records[name]
    else:
        records[name] = data
    return torch_zip(records)


def pickled_data(records: dict[str, bytes]) -> bytes:
    return next(data for name, data in records.items() if name.endswith("data/0"))


def forged() -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, start of the reason the message gives)."""
    good = saved(VALID)
    pickled = records_of(good)
    pkl = next(n for n in pickled if n.endswith("data.pkl"))
    twice = io.BytesIO()
    with zipfile.ZipFile(twice, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is asked to write
        archive.writestr(pkl, pickled[pkl])
        archive.writestr(pkl, pickled[pkl])
    return {
        "empty": (b"", "it is not a zip archive"),
        "text": (b"version https://git-lfs.github.com/spec/v1\n", "it is not a zip archive"),
        "truncated to half": (good[: len(good) // 2], "it is not a zip archive"),
        "cut in the directory": (good[:-30], "it is not a zip archive"),
        "compressed records": (deflated(good), "record"),
        "a record twice": (twice.getvalue(), "record"),
        "no data.pkl": (with_record(good, "data.pkl", None), "expected one data.pkl"),
        "pickle cut short": (with_record(good, "data.pkl", pickled[pkl][:-9]), ""),
        "pickle of garbage": (with_record(good, "data.pkl", b"\x80\x02\xff\xfe\xfd"), ""),
        "a tensor record missing": (with_record(good, "data/0", None), "RuntimeError"),
        "a tensor record cut short": (with_record(good, "data/0", pickled_data(pickled)[:4]), "do not have the sizes"),
        "a tensor record grown": (with_record(good, "data/1", pickled_data(pickled) * 2), "do not have the sizes"),
        "a list": (saved([torch.ones(2)]), "does not hold a state dict"),
        "an empty dict": (saved({}), "does not hold a state dict"),
        "a dict with a number": (saved({"a": torch.ones(2), "step": 3}), "does not hold a state dict"),
        "integer keys": (saved({1: torch.ones(2)}), "state dict key 1 is not a string"),
        "a meta tensor": (saved({"a": torch.empty(3, device="meta")}), "tensor 'a' is a"),
        "a sparse tensor": (saved({"a": torch.eye(3).to_sparse()}), "tensor 'a' is a"),
        "complex weights": (saved({"a": torch.ones(2, dtype=torch.complex64)}), "tensor 'a' has dtype"),
        "uint16 weights": (saved({"a": torch.ones(2, dtype=torch.uint16)}), "tensor 'a' has dtype"),
        "a zero-stride view larger than the file": (saved({"a": torch.ones(1).expand(4096, 4096)}), "needs more bytes"),
    }


@pytest.mark.parametrize("name", sorted(forged()))
def test_damaged_or_odd_files_fail_with_checkpoint_error_naming_the_file(tmp_path, name):
    blob, reason = forged()[name]
    path = tmp_path / "model.pth"
    path.write_bytes(blob)
    with pytest.raises(CheckpointError) as caught:
        open_source(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and reason in message
    assert "download it again" in message or "Pick a model checkpoint" in message


def test_compressed_records_were_read_as_garbage_by_torch(tmp_path):
    """Why compressed archives are refused: torch's memory-mapped loader takes the compressed bytes as data."""
    path = tmp_path / "model.pth"
    path.write_bytes(deflated(saved(VALID)))
    loaded = torch.load(path, weights_only=True, mmap=True)
    assert not torch.equal(loaded["a.weight"], VALID["a.weight"])


@pytest.mark.parametrize("wrap", [lambda sd: sd, lambda sd: {"state_dict": sd, "epoch": 3},
                                  lambda sd: {"ema": {k: torch.nn.Parameter(v) for k, v in sd.items()}}])
def test_plain_state_dicts_load_exactly(tmp_path, wrap):
    """The valid counterparts: plain, wrapped and Parameter-valued state dicts, views and our re-zipped archive."""
    views = {**VALID, "t.weight": VALID["a.weight"].t(), "slice": VALID["a.weight"][1]}
    path = tmp_path / "model.pth"
    for blob in (saved(wrap(views)), torch_zip(records_of(saved(wrap(views))))):
        path.write_bytes(blob)
        loaded = load_torch_file(path)
        assert loaded.keys() == views.keys()
        assert all(torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in views.items())


def test_the_official_embedding_file_loads(reference):
    tensors = load_torch_file(reference / "pos_emb.pt")
    assert [tuple(t.shape) for t in tensors.values()] == [(58, 5120)]


# -- fuzzing ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def valid_file() -> bytes:
    g = torch.Generator().manual_seed(0)
    state = {f"blocks.{i}.{n}": torch.randn(4, 4, generator=g).to(dtype) for i in range(6)
             for n, dtype in (("weight", torch.float16), ("bias", torch.float32))}
    blob = saved({"state_dict": state, "ema": {"x": torch.ones(2, dtype=torch.bfloat16)}})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "valid.pth"
        path.write_bytes(blob)
        read(str(path))  # first use: lazy initialisation inside torch is not the reader's doing
    return blob


def read(path: str) -> None:
    source = open_source(path)
    try:
        for key in source.keys():
            source.get(key)
    finally:
        source.close()


def check(blob: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        check_hostile(read, blob, os.path.join(folder, "fuzz.pth"), PYTHON_FACTOR, ".pth")


@fuzz_settings(250)
@given(blob=st.one_of(st.binary(max_size=2048), st.binary(max_size=2048).map(lambda b: b"PK\x03\x04" + b)))
def test_random_bytes(valid_file, blob):
    check(blob)


@fuzz_settings(300)
@given(data=st.data())
def test_mutated_archive(valid_file, data):
    check(data.draw(mutated(valid_file)))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@fuzz_settings(450)
@given(data=st.data())
def test_valid_archive_around_a_mutated_pickle(valid_file, data):
    records = records_of(valid_file)
    name = next(n for n in records if n.endswith("data.pkl"))
    records[name] = data.draw(mutated(records[name], keep=2))
    check(torch_zip(records))
