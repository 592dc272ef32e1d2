"""The fuzz harness (tests/hostile.py) catches what it claims to: a reader that allocates natively beyond
its budget (even lazily, even when it wraps the failure in our error type), one that builds too many
Python objects, one that is slow, and one that crashes."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from hostile import address_space, check_hostile
from seedvr2_core.errors import CheckpointError

BLOB = b"\0" * 4096
needs_proc = pytest.mark.skipif(address_space() is None, reason="needs /proc/self/statm and RLIMIT_AS (Linux)")


@needs_proc
def test_a_lazy_native_allocation_wrapped_in_our_error_is_caught(tmp_path):
    def reader(path: str) -> None:
        try:
            torch.empty(1 << 30, dtype=torch.uint8)  # untouched pages: no RSS, but address space
        except RuntimeError as e:
            raise CheckpointError(f"{path}: {e}") from None

    reader(str(tmp_path / "x"))  # unlimited, it succeeds: only the limit makes it visible
    with pytest.raises(AssertionError, match="beyond its budget"):
        check_hostile(reader, BLOB, str(tmp_path / "x.bin"), 8)


@needs_proc
def test_an_unwrapped_native_allocation_failure_fails_the_check(tmp_path):
    with pytest.raises(MemoryError):
        check_hostile(lambda path: np.empty(1 << 30, np.uint8), BLOB, str(tmp_path / "x.bin"), 8)


def test_too_many_python_objects_fail_the_check(tmp_path):
    def reader(path: str) -> None:
        objects = [[] for _ in range(20 * len(BLOB))]  # ~1.5 MiB of lists for 4 KiB
        raise CheckpointError(f"{path}: made {len(objects)} lists")

    with pytest.raises(AssertionError, match="bytes of Python objects"):
        check_hostile(reader, BLOB, str(tmp_path / "x.bin"), 8)


def test_a_slow_reader_fails_the_check(tmp_path):
    with pytest.raises(AssertionError, match="took"):
        check_hostile(lambda path: time.sleep(1.05), BLOB, str(tmp_path / "x.bin"), 8)


def test_an_error_of_another_type_or_without_the_file_name_fails_the_check(tmp_path):
    with pytest.raises(KeyError):
        check_hostile(lambda path: {}["missing"], BLOB, str(tmp_path / "x.bin"), 8)

    def anonymous(path: str) -> None:
        raise CheckpointError("something is wrong")

    with pytest.raises(AssertionError, match="does not name the file"):
        check_hostile(anonymous, BLOB, str(tmp_path / "x.bin"), 8)
