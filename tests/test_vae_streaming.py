"""Temporal streaming: any chunking gives the whole-clip result, memory does not grow with the clip,
and a call reports progress, honours cancellation and leaves the weights untouched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seedvr2_core import VAETiling
from seedvr2_core.host import interrupt_checks
from tests.vae_helpers import random_vae, video

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest

PROBE = Path(__file__).with_name("vae_rss_probe.py")


@pytest.fixture(scope="module")
def vae():
    return random_vae()


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_chunked_decode_equals_whole_clip(vae, chunk):
    latent = torch.randn(2, 16, 6, 3, 5, generator=torch.Generator().manual_seed(chunk))
    whole = vae.decode(latent, tiling=VAETiling(chunk_size=None))
    parts = vae.decode(latent, tiling=VAETiling(chunk_size=chunk))
    assert parts.shape == whole.shape == (2, 3, 21, 24, 40)
    torch.testing.assert_close(parts, whole, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("chunk", [1, 3])
def test_chunked_encode_equals_whole_clip(vae, chunk):
    x = video(21, 24, 40, seed=chunk)
    whole = vae.encode(x, tiling=VAETiling(chunk_size=None))
    parts = vae.encode(x, tiling=VAETiling(chunk_size=chunk))
    assert parts.shape == whole.shape == (1, 16, 6, 3, 5)
    torch.testing.assert_close(parts, whole, atol=1e-4, rtol=1e-4)


def _probe(size, chunk):
    spec = {"op": "decode", "size": size, "channels": [32, 64, 64, 64], "groups": 8, "threads": 1,
            "tiling": {"chunk_size": chunk}}
    done = subprocess.run([sys.executable, str(PROBE), json.dumps(spec)], capture_output=True, text=True,
                          check=True, timeout=300)
    return json.loads(done.stdout)


def test_streamed_memory_does_not_grow_with_the_clip():
    """Peak RSS of a 41-frame decode stays that of a 9-frame one; the whole clip at once needs far more."""
    short, long_ = _probe([1, 3, 8, 8], 1), _probe([1, 11, 8, 8], 1)
    whole = _probe([1, 11, 8, 8], None)
    output_growth = 3 * (41 - 9) * 64 * 64 * 4
    assert long_["out_shape"] == [1, 3, 41, 64, 64]
    assert long_["peak_bytes"] <= 1.2 * short["peak_bytes"] + output_growth, (short, long_)
    assert whole["peak_bytes"] >= 1.8 * long_["peak_bytes"], (long_, whole)


def test_progress_reaches_total_and_weights_are_untouched(vae):
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    seen = []
    vae.decode(torch.randn(1, 16, 3, 2, 3), progress=lambda d, t: seen.append((d, t)),
               tiling=VAETiling(tile_size=8))
    vae.encode(video(1, 16, 24), progress=lambda d, t: seen.append((d, t)))
    dec = [s for s in seen if s[1] == seen[0][1]]
    assert [d for d, _ in dec] == list(range(1, len(dec) + 1)) and dec[-1][0] == dec[-1][1]
    assert seen[-1][0] == seen[-1][1]
    for k, v in vae.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_cancellation_stops_between_tiles(vae):
    calls = []

    def check():
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt("cancelled")

    with interrupt_checks(check), pytest.raises(KeyboardInterrupt, match="cancelled"):
        vae.decode(torch.randn(1, 16, 2, 4, 4), tiling=VAETiling(tile_size=16))
    assert len(calls) == 6
