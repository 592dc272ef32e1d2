"""Running a model-file reader on hostile bytes under watch, for the fuzz tests of every format.

A reader passes one input when only CheckpointError naming the file comes out, within a time limit, and
its allocations stay within a multiple of the input size:
* Python objects: tracemalloc's peak over the call;
* native memory (torch storages, numpy buffers, the C++ zip reader): tracemalloc does not see these, so
  a second call runs with the process' address space limited (RLIMIT_AS) to what it has now plus the
  allowed headroom. Any larger allocation, lazily backed or not, fails inside the reader; the MemoryError or
  "can't allocate memory" error that causes is found in the raised error's chain and fails the check,
  whatever error type the reader wrapped it in.
A watchdog (faulthandler) ends the process with every thread's stack if a reader hangs outright.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
import time
import tracemalloc
from dataclasses import dataclass
from typing import Callable, Iterator

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from seedvr2_core.errors import CheckpointError

DEADLINE_S = 1.0
HANG_S = 30.0  # the watchdog: far beyond the deadline, so only a real hang trips it
NATIVE_SLACK = 32 << 20  # allocator arenas, the C++ zip reader's tables, small torch ops
NATIVE_FACTOR = 16  # a tensor read and decoded to float32 is at most ~8x its stored bytes (Q4_K)
PYTHON_SLACK = 64 << 10
ALLOCATION_FAILURES = ("can't allocate memory", "cannot allocate memory", "out of memory")

try:
    import resource
except ImportError:  # not POSIX: the native bound is not checked there
    resource = None


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings for the readers' fuzz tests: `examples` inputs, each within DEADLINE_S."""
    return settings(max_examples=examples, deadline=DEADLINE_S * 1000,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def address_space() -> int | None:
    """This process' virtual memory size in bytes (Linux), None where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


@contextlib.contextmanager
def native_headroom(extra: int) -> Iterator[None]:
    """Within this scope the process may map at most `extra` more bytes (a no-op where unsupported)."""
    now = address_space()
    if resource is None or now is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = now + extra if hard == resource.RLIM_INFINITY else min(now + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def allocation_failure(error: BaseException) -> BaseException | None:
    """The MemoryError / failed allocation anywhere in `error`'s cause and context chain, else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, MemoryError) or any(s in str(error).lower() for s in ALLOCATION_FAILURES):
            return error
        error = error.__cause__ or error.__context__
    return None


@dataclass
class Tally:
    """What one reader's hostile inputs cost at most, printed at the end of a run (conftest.py)."""

    inputs: int = 0
    refused: int = 0
    slowest: float = 0.0  # seconds
    python_ratio: float = 0.0  # Python peak / input size, over inputs of at least 1 KiB
    python_peak: int = 0  # bytes, over all inputs

    def add(self, outcome: "Outcome", size: int) -> None:
        self.inputs += 1
        self.refused += outcome.error is not None
        self.slowest = max(self.slowest, outcome.seconds)
        self.python_peak = max(self.python_peak, outcome.python_peak)
        if size >= 1024:
            self.python_ratio = max(self.python_ratio, outcome.python_peak / size)


TALLIES: dict[str, Tally] = {}  # reader name -> tally; test-run bookkeeping only


@dataclass
class Outcome:
    error: CheckpointError | None  # None: the reader accepted the input (the run under the native limit)
    seconds: float
    python_peak: int  # bytes, tracemalloc's peak during the call
    unlimited_error: CheckpointError | None  # the same from the run without the limit


def _call(read: Callable[[str], object], path: str) -> CheckpointError | None:
    try:
        read(path)
    except CheckpointError as e:
        return e
    return None


def run_watched(read: Callable[[str], object], path: str, native_budget: int) -> Outcome:
    """read(path) twice: with tracemalloc on (the Python peak), then with `native_budget` bytes of address
    space to spare (timed; tracemalloc's own bookkeeping would count against the limit). A watchdog ends a
    hang. Errors other than CheckpointError propagate: a crash is a failure of the reader.
    """
    faulthandler.dump_traceback_later(HANG_S, exit=True)
    try:
        tracemalloc.start()
        try:
            first = _call(read, path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        start = time.perf_counter()
        with native_headroom(native_budget):
            error = _call(read, path)
        seconds = time.perf_counter() - start
    finally:
        faulthandler.cancel_dump_traceback_later()
    return Outcome(error, seconds, peak, first)


def check_hostile(read: Callable[[str], object], blob: bytes, path: str, python_factor: float,
                  tally: str | None = None, deadline: float = DEADLINE_S) -> Outcome:
    """Write `blob` to `path`, read it watched, and assert the reader behaved (see the module docstring);
    `tally` names the reader in the end-of-run summary; `deadline` (s) is for inputs far above fuzz size."""
    with open(path, "wb") as f:
        f.write(blob)
    # The address space holds the Python objects too, so their budget is part of the headroom.
    outcome = run_watched(read, path, NATIVE_SLACK + int((NATIVE_FACTOR + python_factor) * len(blob)))
    if outcome.error is not None:
        assert path in str(outcome.error), f"the error does not name the file: {outcome.error}"
        failed = allocation_failure(outcome.error)
        assert failed is None, f"a {len(blob)}-byte file made the reader allocate beyond its budget: {failed!r}"
    unlimited = outcome.unlimited_error
    assert (unlimited is None) == (outcome.error is None), f"not deterministic: {unlimited!r}, then {outcome.error!r}"
    assert outcome.seconds < deadline, f"took {outcome.seconds:.2f} s"
    budget = python_factor * len(blob) + PYTHON_SLACK
    assert outcome.python_peak <= budget, f"{outcome.python_peak} bytes of Python objects for a {len(blob)}-byte file"
    if tally is not None:
        TALLIES.setdefault(tally, Tally()).add(outcome, len(blob))
    return outcome


SPECIAL_U64 = st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63, 2**64 - 1])


@st.composite
def mutated(draw, valid: bytes, keep: int = 0) -> bytes:
    """1 to 4 edits of `valid` after its first `keep` bytes: byte or u64 overwrite, truncation, insertion,
    deletion."""
    blob = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        pos = min(draw(st.integers(keep, max(len(blob) - 1, keep))), len(blob))
        op = draw(st.sampled_from(["byte", "u64", "truncate", "insert", "delete"]))
        if op == "byte" and pos < len(blob):
            blob[pos] = draw(st.integers(0, 255))
        elif op == "u64":
            blob[pos: pos + 8] = draw(SPECIAL_U64).to_bytes(8, "little")
        elif op == "truncate":
            del blob[pos:]
        elif op == "insert":
            blob[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            del blob[pos: pos + draw(st.integers(1, 16))]
    return bytes(blob)


def is_linux() -> bool:
    return sys.platform.startswith("linux")
