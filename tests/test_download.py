"""`--download`: official files fetched with huggingface_hub from a local stand-in of the Hub (127.0.0.1 only),
accepted only with the right SHA-256, never left under the final name when wrong."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import COMMIT, FakeHub, HostedFile, start, stop

from seedvr2_core.download import PINNED_SHA256, download_file
from seedvr2_core.errors import CheckpointError

REPO = "ByteDance-Seed/SeedVR2-3B"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hub(monkeypatch, tmp_path):
    import huggingface_hub.constants as constants

    # No credentials of the machine may travel, not even to 127.0.0.1.
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    served = start(FakeHub())
    yield served
    stop(served)


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_the_pinned_digests_are_those_of_the_reference_copies(reference):
    for name, digest in PINNED_SHA256.items():
        assert hashlib.sha256((reference / name).read_bytes()).hexdigest() == digest


def test_a_verified_file_lands_under_its_name_and_nothing_else_stays(hub, tmp_path):
    content = os.urandom(3000)
    hub.files[(REPO, "ema_vae.pth")] = HostedFile(content)
    path = download_file(REPO, "ema_vae.pth", tmp_path / "models", endpoint=hub.endpoint)
    assert path == tmp_path / "models" / "ema_vae.pth" and path.read_bytes() == content
    assert leftovers(tmp_path / "models") == ["ema_vae.pth"]
    assert ("GET", f"/{REPO}/resolve/{COMMIT}/ema_vae.pth") in hub.requests  # bound to the commit it checked


def test_a_corrupted_download_is_refused_and_not_left_under_the_final_name(hub, tmp_path):
    good = os.urandom(3000)
    bad = bytearray(good)
    bad[1234] ^= 0xFF  # same size: only the digest can tell
    hub.files[(REPO, "seedvr2_ema_3b.pth")] = HostedFile(bytes(bad), hashlib.sha256(good).hexdigest())
    with pytest.raises(CheckpointError, match="has SHA-256 .*, expected .*: the file was refused and deleted"):
        download_file(REPO, "seedvr2_ema_3b.pth", tmp_path, endpoint=hub.endpoint)
    assert leftovers(tmp_path) == []


def test_a_pinned_file_with_other_content_is_refused_before_downloading(hub, tmp_path, reference):
    hub.files[(REPO, "pos_emb.pt")] = HostedFile(b"an honest etag for other bytes")
    with pytest.raises(CheckpointError, match="not the known release's fa07a148"):
        download_file(REPO, "pos_emb.pt", tmp_path, endpoint=hub.endpoint)
    assert not any(method == "GET" for method, _ in hub.requests) and leftovers(tmp_path) == []
    hub.files[(REPO, "pos_emb.pt")] = HostedFile((reference / "pos_emb.pt").read_bytes())
    assert download_file(REPO, "pos_emb.pt", tmp_path, endpoint=hub.endpoint).read_bytes() == (
        reference / "pos_emb.pt").read_bytes()


def test_a_file_without_a_reported_sha256_is_not_accepted(hub, tmp_path):
    hub.files[(REPO, "ema_vae.pth")] = HostedFile(b"data", advertised_sha256="a" * 40)  # a git blob id
    with pytest.raises(CheckpointError, match="reports no SHA-256 for this file"):
        download_file(REPO, "ema_vae.pth", tmp_path, endpoint=hub.endpoint)
    assert leftovers(tmp_path) == []


def test_a_missing_remote_file_gives_one_line(hub, tmp_path):
    with pytest.raises(CheckpointError, match=f"downloading {REPO}/ema_vae.pth failed") as error:
        download_file(REPO, "ema_vae.pth", tmp_path, endpoint=hub.endpoint)
    assert "\n" not in str(error.value)


def run_cli(args: list[str], hub: FakeHub, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1",
               PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "seedvr2_core", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_command_line_downloads_what_is_missing_through_hf_endpoint(hub, tmp_path, reference):
    dit, vae = os.urandom(5000), os.urandom(4000)
    hub.files[(REPO, "seedvr2_ema_3b.pth")] = HostedFile(dit)
    hub.files[(REPO, "ema_vae.pth")] = HostedFile(os.urandom(4000), hashlib.sha256(vae).hexdigest())
    hub.files[(REPO, "pos_emb.pt")] = HostedFile((reference / "pos_emb.pt").read_bytes())
    models = tmp_path / "models"
    failed = run_cli(["--download", "--models-dir", str(models)], hub, tmp_path / "hf")
    assert failed.returncode == 1, failed.stderr
    assert "seedvr2: error: downloaded ByteDance-Seed/SeedVR2-3B/ema_vae.pth has SHA-256" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert leftovers(models) == ["seedvr2_ema_3b.pth"]  # the verified DiT stays, the bad VAE does not
    hub.files[(REPO, "ema_vae.pth")] = HostedFile(vae)
    done = run_cli(["--download", "--models-dir", str(models)], hub, tmp_path / "hf")
    assert done.returncode == 0, done.stderr
    assert leftovers(models) == ["ema_vae.pth", "pos_emb.pt", "seedvr2_ema_3b.pth"]
    assert (models / "seedvr2_ema_3b.pth").read_bytes() == dit and (models / "ema_vae.pth").read_bytes() == vae
    gets = [path for method, path in hub.requests if method == "GET"]
    assert sum(path.endswith("seedvr2_ema_3b.pth") for path in gets) == 1  # present files are not fetched again
