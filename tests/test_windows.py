"""Window partitions against the official ones, coverage on random grids, and the packed-token attention
plan built from them."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seedvr2_core import make_dit_config, partition_windows
from seedvr2_core.attention import dense_length
from seedvr2_core.dit.window_attention import build_window_plan

METHODS = {"720pwin_by_size_bysize": False, "720pswin_by_size_bysize": True}


def as_lists(windows):
    return [[[s.start, s.stop] for s in w] for w in windows]


def test_all_official_cases_equal(reference):
    data = json.loads((reference / "golden" / "window_partitions.json").read_text())
    assert len(data["cases"]) == 63
    checked = 0
    for case in data["cases"]:
        for method, shifted in METHODS.items():
            got = as_lists(partition_windows(tuple(case["size"]), tuple(data["window"]), shifted))
            assert got == case[method], (case["size"], method)
            checked += 1
    assert checked == 126


@settings(max_examples=300, deadline=None)
@given(t=st.integers(1, 40), h=st.integers(1, 140), w=st.integers(1, 140), shifted=st.booleans())
def test_every_token_covered_exactly_once(t, h, w, shifted):
    counts = [[[0] * w for _ in range(h)] for _ in range(t)]
    for st_, sh, sw in partition_windows((t, h, w), (4, 3, 3), shifted):
        assert st_.stop > st_.start and sh.stop > sh.start and sw.stop > sw.start
        for i in range(st_.start, st_.stop):
            for j in range(sh.start, sh.stop):
                for k in range(sw.start, sw.stop):
                    counts[i][j][k] += 1
    assert all(c == 1 for plane in counts for row in plane for c in row)


def test_rejects_empty_grid():
    with pytest.raises(ValueError, match="non-empty grid"):
        partition_windows((0, 4, 4))


GRIDS = st.tuples(st.integers(1, 12), st.integers(1, 90), st.integers(1, 160))


@settings(max_examples=200, deadline=None)
@given(grids=st.lists(GRIDS, min_size=1, max_size=3), txt=st.lists(st.integers(0, 5), min_size=3, max_size=3),
       windows=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)), shifted=st.booleans())
def test_the_attention_plan_takes_every_video_token_once_and_every_text_token_per_window(grids, txt, windows,
                                                                                           shifted):
    """The packed-token plan the model runs on (several samples, random window counts): every video row in
    exactly one window, each sample's text rows in every window of that sample, sequence bounds consistent."""
    cfg = dataclasses.replace(make_dit_config("seedvr2-3b"), window=windows)
    txt_lens = txt[: len(grids)]
    plan = build_window_plan(cfg, grids, txt_lens, shifted, torch.device("cpu"), rope=False)
    n_vid = sum(t * h * w for t, h, w in grids)
    vid_count = torch.zeros(n_vid, dtype=torch.int64)
    txt_count = torch.zeros(sum(txt_lens), dtype=torch.int64)
    for group in plan.groups:
        vid_rows = group.index[:, : group.vid_len].reshape(-1)
        vid_count.index_add_(0, vid_rows, torch.ones_like(vid_rows))
        txt_rows = group.index[:, group.vid_len : group.length].reshape(-1) - n_vid
        txt_count.index_add_(0, txt_rows, torch.ones_like(txt_rows))
        # CPU: padded to the attention kernel's length with the window's first row, masked out as keys
        padded = group.index.shape[1]
        assert padded == dense_length(group.length, "cpu") and padded - group.length < 32
        assert torch.equal(group.index[:, group.length :], group.index[:, :1].expand(-1, padded - group.length))
        if padded > group.length:
            assert group.mask.shape == (1, 1, 1, padded) and (group.mask[..., : group.length] == 0).all()
            assert (group.mask[..., group.length :] == float("-inf")).all()
        else:
            assert group.mask is None
    assert (vid_count == 1).all()
    per_sample = [len(partition_windows(g, windows, shifted)) for g in grids]
    expected = torch.tensor([n for n, length in zip(per_sample, txt_lens) for _ in range(length)], dtype=torch.int64)
    assert torch.equal(txt_count, expected) and torch.equal(plan.txt_windows.view(-1).long(), expected)
    lengths = [g.length for g in plan.groups for _ in range(g.index.shape[0])]
    assert plan.cu_seqlens.tolist() == [0, *itertools.accumulate(lengths)] and plan.max_len == max(lengths)


@pytest.mark.parametrize("variant", ["seedvr2-3b", "seedvr2-7b"])
@pytest.mark.parametrize("shifted", [False, True])
def test_each_packed_row_carries_the_rotation_of_its_place_in_its_window(variant, shifted):
    """RoPE is applied once to the packed q and k: each row's angle must be the one the official per-window
    computation gives that token in every window it joins (text in all windows of its sample, 3B only)."""
    from seedvr2_core.dit.rope import rotation, window_angles

    cfg = make_dit_config(variant)
    grids, txt_lens = [(3, 7, 9), (2, 4, 5)], [5, 3]
    plan = build_window_plan(cfg, grids, txt_lens, shifted, torch.device("cpu"))
    n_vid = sum(t * h * w for t, h, w in grids)
    text_rotated = cfg.rope_type == "mmrope3d"
    assert len(plan.rot) == (n_vid + sum(txt_lens) if text_rotated else n_vid)
    windows = 0
    for group in plan.groups:
        txt_len = group.length - group.vid_len
        expected = rotation(window_angles(cfg, group.shape, txt_len))
        for rows in group.index[:, : group.length]:  # one window, without the attention kernel's padding
            windows += 1
            if text_rotated:
                assert torch.equal(plan.rot[rows], expected)
            else:
                assert torch.equal(plan.rot[rows[: group.vid_len]], expected[: group.vid_len])
                assert torch.equal(expected[group.vid_len :], torch.ones_like(expected[group.vid_len :]))
    assert windows == sum(len(partition_windows(g, cfg.window, shifted)) for g in grids)
