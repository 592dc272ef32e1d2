"""Memory options and the parsers the command line and node widgets use."""

from __future__ import annotations

import pytest

from seedvr2_core.errors import InputError
from seedvr2_core.memory_options import (
    MemoryOptions,
    format_bytes,
    parse_blocks_to_swap,
    parse_budget,
    parse_dit_batch,
    parse_vae_tile,
)
from seedvr2_core.vae.tiling import VAETiling


@pytest.mark.parametrize("text,value,unit", [
    ("8GiB", 8, 30), ("8G", 8, 30), ("8 GB", 8, 30), ("7.5G", 7.5, 30), ("6000M", 6000, 20),
    ("6000mib", 6000, 20), ("512k", 512, 10), ("1T", 1, 40), ("1073741824", 1073741824, 0), (".5g", 0.5, 30),
])
def test_budget_sizes_are_binary(text, value, unit):
    assert parse_budget(text) == int(value * 2**unit)


@pytest.mark.parametrize("text", ["auto", "AUTO", "free", " "])
def test_budget_auto_means_free_memory(text):
    assert parse_budget(text) is None


@pytest.mark.parametrize("text", ["8X", "eight", "-1G", "0", "8 G B", "1e9", "G"])
def test_bad_budget_names_the_value_and_the_forms(text):
    with pytest.raises(InputError, match="8GiB, 7.5G or 6000M") as e:
        parse_budget(text)
    assert repr(text) in str(e.value)


def test_vae_tile_forms():
    assert parse_vae_tile("auto") == "auto"
    assert parse_vae_tile("off") == VAETiling()
    assert parse_vae_tile("512") == VAETiling(tile_size=512, mode="frame")
    assert parse_vae_tile("512:frame") == VAETiling(tile_size=512, mode="frame")
    assert parse_vae_tile("384:tile") == VAETiling(tile_size=384, mode="tile")
    assert parse_vae_tile("384:tile:96") == VAETiling(tile_size=384, mode="tile", tile_overlap=96)
    for bad in ("big", "512:frame:96", "512:tiles", "-5", "4"):
        with pytest.raises(InputError):
            parse_vae_tile(bad)


def test_counts_and_validation():
    assert parse_blocks_to_swap("auto") == "auto" and parse_blocks_to_swap("All") == "all"
    assert parse_blocks_to_swap("16") == 16 and parse_dit_batch("21") == 21 and parse_dit_batch("auto") == "auto"
    for parse, bad in ((parse_blocks_to_swap, "-1"), (parse_blocks_to_swap, "half"), (parse_dit_batch, "0")):
        with pytest.raises(InputError):
            parse(bad)
    for bad in (dict(budget=0), dict(budget=1.5), dict(blocks_to_swap=-2), dict(blocks_to_swap=True),
                dict(vae_tile="512"), dict(dit_batch=0), dict(device_memory="unified")):
        with pytest.raises(InputError):
            MemoryOptions(**bad)
    assert format_bytes(3 * 2**30 // 2) == "1.50 GiB" and format_bytes(300 * 2**20) == "300 MiB"
