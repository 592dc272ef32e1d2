"""Running the real `python -m seedvr2_core` in a subprocess, measuring it and stopping it mid-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "SEEDVR2_MODELS"))}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", **(extra or {}))
    return env


def command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "seedvr2_core", *map(str, args)]


@dataclass
class Finished:
    returncode: int
    stderr: str
    peak_rss: int  # bytes, the child's own ru_maxrss (VmHWM at exit)
    seconds: float


def run(args: list[str], timeout: float = 300, env: dict[str, str] | None = None, cwd: Path | None = None) -> Finished:
    """Run the CLI to completion; the peak RSS is that child's alone (os.wait4), not the test's."""
    start = time.monotonic()
    proc = subprocess.Popen(command(args), env=cli_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, cwd=cwd)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    stderr = proc.stderr.read()  # the child ends by closing its stderr
    _, status, usage = os.wait4(proc.pid, 0)
    watchdog.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    return Finished(proc.returncode, stderr, usage.ru_maxrss * 1024, time.monotonic() - start)


def committed_frames(work: Path) -> int:
    try:
        return json.loads((work / "manifest.json").read_text())["next_frame"]
    except (OSError, ValueError):
        return 0


def run_until_committed(args: list[str], work: Path, frames: int, sig: int, timeout: float = 300) -> tuple[int, str, int]:
    """Start the CLI, send `sig` once at least `frames` frames are committed in `work`; returns
    (exit status, stderr, frames committed when the signal was sent)."""
    proc = subprocess.Popen(command(args), env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + timeout
    seen = 0
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            seen = committed_frames(work)
            if seen >= frames:
                proc.send_signal(sig)
                break
            time.sleep(0.01)
        _, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    return proc.returncode, stderr, seen
