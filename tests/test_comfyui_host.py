"""The pack in a real ComfyUI (set COMFYUI_DIR; skipped otherwise, CI has none).

* inside a ComfyUI process (tests/comfy_host_check.py, run with ComfyUI's Python): schemas validated by
  ComfyUI, folder_paths, ModelPatcher loading and unloading, ProgressBar previews, interrupt and rerun;
* the acceptance run: ../shared/tools/comfy-host/run_pack.sh with --browser: the pack imports, every
  workflow loads in the real frontend without a missing-node dialog and runs to its saved outputs;
* Cancel through the server: /interrupt during Upscale Video, then the same prompt again (the loaders'
  cached handles reused) gives the frames of a run from scratch.

Environment: COMFYUI_DIR (a ComfyUI 0.8.0 set up by the comfy-host tool), COMFY_PY (its Python,
default /tmp/venv-comfy/bin/python), COMFY_HOST_TOOLS (default ../shared/tools/comfy-host).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from media_build import synthetic_frames, write_video
from node_helpers import REPO
from seedvr2_core.make_test_models import write_test_models
from seedvr2_core.video_io import probe, read_frames

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
pytestmark = pytest.mark.skipif(not COMFYUI_DIR, reason="needs a real ComfyUI: set COMFYUI_DIR")
COMFY_PY = os.environ.get("COMFY_PY", "/tmp/venv-comfy/bin/python")
TOOLS = Path(os.environ.get("COMFY_HOST_TOOLS", REPO.parent / "shared" / "tools" / "comfy-host"))
PORT = 8191


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    assert Path(COMFY_PY).is_file(), f"COMFYUI_DIR is set but ComfyUI's Python {COMFY_PY} is missing: set COMFY_PY"
    folder = tmp_path_factory.mktemp("models")
    write_test_models(folder)
    return folder


def test_the_nodes_inside_a_comfyui_process(models, tmp_path):
    (tmp_path / "more").mkdir()
    shutil.copy(models / "SEEDVR2" / "seedvr2_ema_3b_fp16.safetensors", tmp_path / "more" / "extra_dit.safetensors")
    done = subprocess.run([COMFY_PY, str(REPO / "tests" / "comfy_host_check.py"), COMFYUI_DIR, str(models),
                           str(tmp_path)],
                          capture_output=True, text=True, timeout=900, cwd=str(models))
    assert done.returncode == 0, done.stderr[-4000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["in_comfyui"] and set(found["schemas"]) == {
        "SeedVR2LoadDiT", "SeedVR2LoadVAE", "SeedVR2Upscale", "SeedVR2UpscaleVideo", "SeedVR2Encode",
        "SeedVR2Restore", "SeedVR2Decode"}
    assert found["schemas"]["SeedVR2UpscaleVideo"]["outputs"] == ["VIDEO"]
    assert found["registry"] == {"os": ["OS Independent"], "accelerators": ["GPU :: NVIDIA CUDA"], "comfyui": ">=0.8.0",
                                 "publisher": "seedvr2-onestep", "name": "SeedVR2 One-Step Restoration",
                                 "icon": found["registry"]["icon"]} and found["registry"]["icon"].startswith("https://")
    assert found["folders"] == [str(tmp_path / "more"), str(models / "SEEDVR2")]  # the yaml's, then ours
    assert {"seedvr2_ema_3b_fp16.safetensors", "extra_dit.safetensors"} <= set(found["files"])
    assert found["extra_loads"] == "DiTHandle"
    assert found["outside"] == found["link_outside"] == "refused" and "linked_out.safetensors" not in found["files"]
    assert found["patchers"] == ["ModelPatcher", "ModelPatcher"]  # our subclass of ComfyUI's
    assert found["loaded_by_comfy"] == found["placed"] == [True, True]
    assert found["after_unload_all"] == [False, False]  # unload_all_models gave them back
    progress = found["progress"]
    assert progress["monotonic"] and progress["last"] == [9, 9] and progress["count"] > 20
    assert progress["previews"] and all(p[0] == "JPEG" and p[1] == [43, 32] for p in progress["previews"])
    assert found["interrupted"] == [True, True, True] and found["rerun_equal"] == [True, True, True]
    assert found["auto_swap"]["swapped"] > 0 and not found["auto_after_unload"]


def test_every_workflow_loads_in_the_real_frontend_and_runs(models, tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run([str(TOOLS / "run_pack.sh"), str(REPO), "--browser", "--require-outputs", "--models",
                           str(models), "--run-dir", str(run_dir), "--port", str(PORT)],
                          capture_output=True, text=True, timeout=3000, env={**os.environ, "COMFY_DIR": COMFYUI_DIR})
    summary = "\n".join(line for line in done.stdout.splitlines() if "[run_pack]" in line or "[  OK" in line
                        or "[OK" in line or "FAIL" in line or "browser check" in line)
    print(summary)
    assert done.returncode == 0, done.stdout[-6000:]
    results = json.loads((run_dir / "reports" / "workflows.json").read_text())
    workflows = sorted(p.name for p in (REPO / "workflows").glob("*.json"))
    assert sorted(Path(r["workflow"]).name for r in results) == workflows
    assert all(r["status"] == "ok" and r["outputs"] and all(o["exists"] for o in r["outputs"]) for r in results)
    for name in workflows:
        report = json.loads((run_dir / "reports" / f"browser-{Path(name).stem}.json").read_text())
        assert report["status"] == "success" and not report["failures"] and not report["dialogs"], report
        assert not report["graph"]["unknown"] and not report["error_toasts"], report


# ---- Cancel through the server ------------------------------------------------------------------------------

def http(path: str, data: dict | None = None):
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", method="POST" if data is not None else "GET",
                                     data=None if data is None else json.dumps(data).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    return json.loads(body) if body else None


def finished(prompt_id: str, timeout: float = 600) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        entry = http(f"/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            return entry
        time.sleep(0.3)
    raise TimeoutError(prompt_id)


def saved_frames(run_dir: Path, entry: dict) -> np.ndarray:
    files = [f for out in entry["outputs"].values() for key in ("images", "videos", "gifs")
             for f in out.get(key, [])]
    assert len(files) == 1, entry["outputs"]
    path = run_dir / "output" / files[0]["subfolder"] / files[0]["filename"]
    return np.stack(list(read_frames(probe(path))))


@pytest.fixture
def server(models, tmp_path):
    run_dir = tmp_path / "server"
    for sub in ("custom_nodes", "input", "output", "temp", "user"):
        (run_dir / sub).mkdir(parents=True)
    (run_dir / "custom_nodes" / "seedvr2").symlink_to(REPO)
    (run_dir / "models").symlink_to(models)
    write_video(run_dir / "input" / "cancel.mp4", synthetic_frames(41, 96, 128), Fraction(24))
    log = open(run_dir / "server.log", "w")
    process = subprocess.Popen([COMFY_PY, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(PORT),
                                "--disable-auto-launch", "--base-directory", str(run_dir), "--database-url",
                                f"sqlite:///{run_dir}/user/comfyui.db"], cwd=COMFYUI_DIR, stdout=log, stderr=log)
    try:
        for _ in range(300):
            try:
                http("/system_stats")
                break
            except OSError:
                time.sleep(0.5)
        yield run_dir
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def test_cancel_then_the_same_prompt_gives_the_uninterrupted_output(server):
    converted = subprocess.run([COMFY_PY, str(TOOLS / "comfy_harness.py"), "convert", "--url",
                                f"http://127.0.0.1:{PORT}", str(REPO / "workflows" / "seedvr2_long_video.json")],
                               capture_output=True, text=True, timeout=120)
    assert converted.returncode == 0, converted.stderr

    def prompt(max_resolution: int) -> dict:
        graph = json.loads(converted.stdout)
        for node in graph.values():
            if node["class_type"] == "LoadVideo":
                node["inputs"]["file"] = "cancel.mp4"
            if node["class_type"] == "SeedVR2UpscaleVideo":
                node["inputs"].update(resolution=0, max_resolution=max_resolution, batch_size=5, overlap=1)
        return {"prompt": graph}

    # 0 and 16384 (above the 128 px input) both mean "no cap": the same output under another cache key
    uninterrupted = finished(http("/prompt", prompt(0))["prompt_id"])
    assert uninterrupted["status"]["status_str"] == "success"
    cancelled_id = http("/prompt", prompt(16384))["prompt_id"]
    work = server / "temp"
    segments = []
    for _ in range(1200):  # cancel once the first batches are written, long before the last
        segments = list(work.glob(".seedvr2_*.seedvr2-work/seg_*"))
        if segments:
            break
        time.sleep(0.05)
    http("/interrupt", {})
    assert segments, "Upscale Video never wrote a batch"
    cancelled = finished(cancelled_id)
    assert cancelled["status"]["status_str"] == "error"
    assert any(m[0] == "execution_interrupted" for m in cancelled["status"]["messages"])
    assert not any(work.glob(".seedvr2_*"))  # the interrupted run left no work files
    again = finished(http("/prompt", prompt(16384))["prompt_id"])  # the loaders' handles come from the cache
    assert again["status"]["status_str"] == "success"
    frames_again, frames_uninterrupted = saved_frames(server, again), saved_frames(server, uninterrupted)
    assert frames_again.shape == (41, 96, 128, 3) and np.array_equal(frames_again, frames_uninterrupted)
