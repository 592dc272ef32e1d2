"""Window partitions against the official ones, and coverage on random grids."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seedvr2_core import partition_windows

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
