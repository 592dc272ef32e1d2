"""The plan search on the real SeedVR2 shapes (no weights needed): fits, preference order, refusal, retry."""

from __future__ import annotations

import pytest
import torch

from seedvr2_core import VideoAutoencoder, make_dit_config, make_vae_config
from seedvr2_core.memory import dit_weights_for, vae_bytes_for
from seedvr2_core.memory_options import MemoryOptions
from seedvr2_core.memory_plan import LIGHTER, PlanModels, PlanSearch, Target, Workload, lighter_plan
from seedvr2_core.sizing import padded_frame_count
from seedvr2_core.vae.tiling import VAETiling

GiB = 1 << 30
HD = Workload(1088, 1920)  # 1080p frames padded to multiples of 16
BUDGETS = [80 * GiB, 24 * GiB, 12 * GiB, 8 * GiB, 6 * GiB, 4 * GiB, 2 * GiB]


def plan_models(fmt: str, variant: str = "seedvr2-3b") -> PlanModels:
    cfg = make_dit_config(variant)
    with torch.device("meta"):
        vae = VideoAutoencoder(make_vae_config({}))
    dtype = torch.float16
    return PlanModels(cfg, dit_weights_for(cfg, fmt, dtype), dtype, vae, vae_bytes_for(vae, dtype), dtype)


@pytest.fixture(scope="module")
def fp16_3b() -> PlanModels:
    return plan_models("float16")


def knobs_of(plan):
    return plan.batch_frames, plan.blocks_to_swap, plan.swap_io, plan.vae_tiling, plan.models_stay


def fits(search: PlanSearch, knobs, budget: int) -> bool:
    return all(search.phase(name, *knobs).total <= budget for name in search.phase_names())


def test_each_plan_is_the_first_candidate_that_fits_and_order_follows_budget(fp16_3b):
    order = {}
    positions = []
    for budget in BUDGETS:
        search = PlanSearch(fp16_3b, HD, Target("cuda", True, budget))
        plan = search.first_fit(MemoryOptions(), 21)
        assert plan is not None and plan.peak <= budget
        for position, knobs in enumerate(search.candidates(MemoryOptions(), 21)):
            order.setdefault(knobs, position)
            if knobs == knobs_of(plan):
                break
            assert not fits(search, knobs, budget), (budget, knobs)
        positions.append(order[knobs_of(plan)])
    assert positions == sorted(positions)  # less memory never picks an earlier (cheaper) plan
    first = PlanSearch(fp16_3b, HD, Target("cuda", True, BUDGETS[0])).first_fit(MemoryOptions(), 21)
    assert knobs_of(first) == (21, 0, False, VAETiling(), True)  # plenty of memory: nothing is turned


@pytest.mark.parametrize("budget", [12 * GiB, 6 * GiB, 2 * GiB])
def test_costly_knobs_are_turned_only_when_cheaper_ones_cannot_fit(fp16_3b, budget):
    search = PlanSearch(fp16_3b, HD, Target("cuda", True, budget))
    plan = search.first_fit(MemoryOptions(), 21)
    every = list(search.candidates(MemoryOptions(), 21))
    same_batch = [k for k in every if k[0] == plan.batch_frames]
    if plan.vae_tiling.resolved_mode == "tile" and plan.vae_tiling.tile_size is not None:
        exact = [k for k in same_batch if k[3].resolved_mode == "frame" or k[3].tile_size is None]
        assert not any(fits(search, k, budget) for k in exact)
    if not plan.models_stay:
        assert not any(fits(search, k, budget) for k in same_batch if k[4] and k[3] == plan.vae_tiling)
    if plan.batch_frames < 21:
        assert not any(fits(search, k, budget) for k in every if k[0] > plan.batch_frames)
    assert (plan.batch_frames - 1) % 4 == 0 or plan.batch_frames == 21


def test_batch_sizes_shrink_through_4n_plus_1(fp16_3b):
    search = PlanSearch(fp16_3b, HD, Target("cuda", True, GiB))
    for requested in (21, 10, 3, 1):
        sizes = search.batch_sizes(MemoryOptions(), requested)
        assert sizes[0] == requested and sizes == sorted(sizes, reverse=True) and sizes[-1] == 1
        assert all(padded_frame_count(n) == n for n in sizes[1:])
    assert search.batch_sizes(MemoryOptions(dit_batch=13), 21) == [13]


@pytest.mark.parametrize("fmt", ["float16", "fp8", "Q4_K"])
def test_all_blocks_swapped_fits_1080p_in_8_gib(fmt):
    """The GPU acceptance setting, on the estimate (benchmarks/memory_plan.py --device cuda measures it)."""
    search = PlanSearch(plan_models(fmt), HD, Target("cuda", True, 8 * GiB))
    plan = search.first_fit(MemoryOptions(blocks_to_swap="all"), 21)
    assert plan is not None and plan.blocks_to_swap == 32 and plan.batch_frames == 21
    assert plan.peak <= 8 * GiB
    resident = search.phases(21, 0, False, plan.vae_tiling, plan.models_stay)
    assert plan.phase("DiT step").total < next(p for p in resident if p.name == "DiT step").total


def test_explicit_knobs_are_kept_or_refused(fp16_3b):
    tiling = VAETiling(tile_size=256, mode="tile")
    memory = MemoryOptions(blocks_to_swap=5, vae_tile=tiling, dit_batch=9)
    search = PlanSearch(fp16_3b, HD, Target("cuda", True, 12 * GiB))
    plan = search.first_fit(memory, 21)
    assert knobs_of(plan)[:4] == (9, 5, False, tiling)
    tight = PlanSearch(fp16_3b, HD, Target("cuda", True, 3 * GiB))
    assert tight.first_fit(memory, 21) is None  # 27 resident blocks alone are more than 3 GiB
    assert tight.first_fit(MemoryOptions(), 21) is not None


def test_lighter_plan_cuts_the_failed_phase(fp16_3b):
    search = PlanSearch(fp16_3b, HD, Target("cuda", True, 8 * GiB))
    plan = search.first_fit(MemoryOptions(), 21)
    for phase in ("DiT step", "decode", "encode"):
        lighter = lighter_plan(search, plan, phase, MemoryOptions())
        assert lighter.batch_frames == plan.batch_frames
        assert lighter.phase(phase).total <= LIGHTER * plan.phase(phase).total
        assert lighter.peak <= 8 * GiB
    lightest = search.first_fit(MemoryOptions(blocks_to_swap="all", dit_batch=21,
                                              vae_tile=VAETiling(tile_size=128, mode="tile")), 21)
    assert lighter_plan(search, lightest, "DiT step", MemoryOptions(blocks_to_swap="all")) is None


def test_refusal_names_the_smallest_plan_and_exactly_what_it_needs(fp16_3b):
    work = Workload(256, 448)
    search = PlanSearch(fp16_3b, work, Target("cuda", True, 64 << 20))
    assert search.first_fit(MemoryOptions(), 9) is None
    smallest = search.smallest(MemoryOptions(), 9)
    enough = PlanSearch(fp16_3b, work, Target("cuda", True, smallest.peak)).first_fit(MemoryOptions(), 9)
    assert enough is not None and enough.peak == smallest.peak
    assert PlanSearch(fp16_3b, work, Target("cuda", True, smallest.peak - 1)).first_fit(MemoryOptions(), 9) is None


def test_a_shared_memory_device_never_swaps_and_counts_the_host_side(fp16_3b):
    work = Workload(256, 448, overlap=2)
    cpu = PlanSearch(fp16_3b, work, Target("cpu", False, 64 * GiB)).first_fit(MemoryOptions(), 21)
    assert (cpu.blocks_to_swap, cpu.swap_io, cpu.models_stay) == (0, False, True)
    assert sorted(p.name for p in cpu.phases) == ["DiT step", "colour fix", "decode", "encode"]
    frames = 21 * 3 * 256 * 448 * 4  # the batch's float32 frames, the colour fix's reference
    for phase in cpu.phases:
        assert phase.parts["weights"] == fp16_3b.dit_weights.total + fp16_3b.vae_bytes
        assert phase.parts["host"] >= frames
