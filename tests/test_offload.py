"""Block swapping on CPU (host to host through the same code path as CUDA): outputs, bytes, reuse, restore."""

from __future__ import annotations

import pytest
import torch

from seedvr2_core import load_dit, make_dit_config
from seedvr2_core.dit.model import NaDiT
from seedvr2_core.dit.observers import InterruptObserver, observing
from seedvr2_core.errors import InputError, ProcessingInterrupted
from seedvr2_core.host import interrupt_checks
from seedvr2_core.offload import IO_IN, IO_OUT, BlockSwapper
from seedvr2_core.residency import on_device
from tests.dit_io import case_inputs

GOLDEN_CASES = {"dit_tiny_3b": "D", "dit_tiny_7b": "D"}  # single-image cases: the fastest
DEEP = {"vid_dim": 64, "txt_in_dim": 32, "heads": 2, "head_dim": 32, "rope_dim": 32, "num_layers": 9, "mm_layers": 3}


@pytest.fixture(scope="module")
def golden_models(golden, golden_io):
    """name -> (model, inputs) for the official tiny 3B and 7B."""
    out = {}
    for name, case in GOLDEN_CASES.items():
        info, weights = golden(name)
        model = load_dit(weights, config=info["config_overrides_vs_official"])
        out[name] = (model, case_inputs(golden_io(name), case)[:5])
    return out


def random_state_dict(cfg, seed: int) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in NaDiT(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) * (0.2 if len(s) > 1 else 1.0) for k, s in shapes.items()}


@pytest.fixture(scope="module")
def deep_model():
    """A random 9-block 3B-layout model stored in bfloat16 (vectors stay float32): mixed dtypes per block."""
    cfg = make_dit_config("seedvr2-3b", DEEP)
    model = load_dit(random_state_dict(cfg, 0), config=cfg, dtype=torch.bfloat16)
    g = torch.Generator().manual_seed(1)
    t, h, w = 3, 8, 12
    inputs = (torch.randn(t * h * w, 33, generator=g), torch.randn(5, 32, generator=g),
              torch.tensor([[t, h, w]]), torch.tensor([[5]]), torch.tensor([500.0]))
    return model, inputs


def snapshot(model) -> dict[str, torch.Tensor]:
    return dict(model.state_dict(keep_vars=True))


def unit_bytes(model, blocks: int, swap_io: bool) -> int:
    """Stored bytes of the swapped modules, summed from their own state dicts."""
    modules = list(model.blocks[:blocks])
    if swap_io:
        modules += [getattr(model, n) for n in IO_IN + IO_OUT if hasattr(model, n)]
    return sum(t.nbytes for m in modules for t in m.state_dict().values())


@pytest.mark.parametrize("name", list(GOLDEN_CASES))
def test_golden_outputs_identical_with_swapping(golden_models, name):
    model, inputs = golden_models[name]
    resident = model(*inputs)
    for blocks, swap_io in ((1, True), (2, False), (len(model.blocks), True)):
        with BlockSwapper(model, blocks, "cpu", swap_io=swap_io) as swapper:
            out = model(*inputs)
        assert torch.equal(out, resident), (blocks, swap_io)
        assert swapper.bytes_last_forward == unit_bytes(model, blocks, swap_io)


@pytest.mark.parametrize(
    "blocks,swap_io,pack_host", [(0, True, False), (4, False, False), (9, False, True), (5, True, True)]
)
def test_deep_model_outputs_identical_with_swapping(deep_model, blocks, swap_io, pack_host):
    model, inputs = deep_model
    resident = model(*inputs)
    with BlockSwapper(model, blocks, "cpu", swap_io=swap_io, pack_host=pack_host):
        with torch.inference_mode():
            out = model(*inputs)
        assert torch.equal(out, resident)
        assert torch.equal(model(*inputs), resident)  # the buffers are reused by a second forward


def test_bytes_copied_are_the_swapped_weights_once_per_forward(deep_model):
    model, inputs = deep_model
    expected = unit_bytes(model, 6, True)
    with BlockSwapper(model, 6, "cpu", swap_io=True) as swapper:
        assert swapper.swapped_bytes == expected
        model(*inputs)
        assert swapper.bytes_last_forward == expected
        model(*inputs)
        assert (swapper.bytes_total, swapper.forwards) == (2 * expected, 2)
    with BlockSwapper(model, 0, "cpu") as swapper:
        model(*inputs)
        assert swapper.bytes_last_forward == 0


class PlacementCheck:
    """Records, per block, where its tensors' data was while it ran and right after."""

    def __init__(self):
        self.during, self.after = {}, {}

    def before_block(self, index, block):
        self.during[index] = [t.data_ptr() for t in block.state_dict().values()]

    def after_block(self, index, block):
        self.after[index] = [t.data_ptr() for t in block.state_dict().values()]


@pytest.mark.parametrize("pack_host", [False, True])
def test_swapped_blocks_run_on_copies_and_go_home_after(deep_model, pack_host):
    model, inputs = deep_model
    before = [[t.clone() for t in b.state_dict().values()] for b in model.blocks]
    with BlockSwapper(model, 4, "cpu", pack_host=pack_host):
        homes = {i: [t.data_ptr() for t in b.state_dict().values()] for i, b in enumerate(model.blocks)}
        check = PlacementCheck()
        with observing(model, check):
            model(*inputs)
        for i, block in enumerate(model.blocks):
            swapped = i < 4
            assert check.after[i] == homes[i]
            assert all((p != h) == swapped for p, h in zip(check.during[i], homes[i])), i
            assert all(torch.equal(a, b) for a, b in zip(before[i], block.state_dict().values()))


class Tagged(torch.Tensor):
    """A tensor subclass standing in for quantised weight types: it must travel as itself, via `.to`."""


def store_unusually(block) -> dict[str, tuple[type, torch.dtype]]:
    """fp8 matrices (packed path), a non-contiguous and a subclass one (`.to` path); returns key -> (type, dtype)."""
    for i, (name, p) in enumerate(n for n in block.named_parameters() if n[1].ndim == 2):
        owner, _, leaf = name.rpartition(".")
        if i == 0:
            value = p.detach().t().contiguous().t()  # same values, transposed strides
        elif i == 1:
            value = p.detach().as_subclass(Tagged)
        else:
            value = p.detach().to(torch.float8_e4m3fn)
        block.get_submodule(owner)._parameters[leaf] = torch.nn.Parameter(value, requires_grad=False)
    return {k: (type(t), t.dtype) for k, t in block.state_dict(keep_vars=True).items()}


def test_stored_dtypes_and_tensor_types_travel_unchanged():
    """Weights stored as fp8, non-contiguous or as a tensor subclass are copied as stored, never converted."""
    cfg = make_dit_config("seedvr2-3b", {**DEEP, "num_layers": 3, "mm_layers": 1})
    model = load_dit(random_state_dict(cfg, 2), config=cfg)
    stored = [store_unusually(block) for block in model.blocks]
    g = torch.Generator().manual_seed(3)
    inputs = (torch.randn(96, 33, generator=g), torch.randn(4, 32, generator=g),
              torch.tensor([[1, 8, 12]]), torch.tensor([[4]]), torch.tensor([999.0]))
    resident = model(*inputs)
    seen, ptrs = {}, {}

    class Types:
        def before_block(self, index, block):
            seen[index] = {k: (type(t), t.dtype) for k, t in block.state_dict(keep_vars=True).items()}
            ptrs[index] = [t.data_ptr() for t in block.state_dict().values()]

        def after_block(self, index, block):
            pass

    with BlockSwapper(model, 3, "cpu", pack_host=True) as swapper, observing(model, Types()):
        homes = [[t.data_ptr() for t in block.state_dict().values()] for block in model.blocks]
        assert torch.equal(model(*inputs), resident)
        assert swapper.bytes_last_forward == unit_bytes(model, 3, False)
    assert seen == dict(enumerate(stored))
    assert all(p != h for i in ptrs for p, h in zip(ptrs[i], homes[i]))  # every tensor ran on a fresh copy
    assert [{k: (type(t), t.dtype) for k, t in b.state_dict(keep_vars=True).items()} for b in model.blocks] == stored


def test_detach_restores_the_very_same_tensors(deep_model):
    model, inputs = deep_model
    resident = model(*inputs)
    before = snapshot(model)
    with BlockSwapper(model, 5, "cpu", swap_io=True):
        model(*inputs)
    after = snapshot(model)
    assert after.keys() == before.keys()
    assert all(after[k] is before[k] for k in before)
    assert torch.equal(model(*inputs), resident)


def test_detach_after_packing_keeps_devices_dtypes_and_values(deep_model):
    """Packing copies the swapped weights into arenas (their new home); everything observable is unchanged."""
    model, inputs = deep_model
    resident = model(*inputs)
    before = {k: (type(v), v.device, v.dtype, v.requires_grad, v.clone()) for k, v in snapshot(model).items()}
    with BlockSwapper(model, 3, "cpu", swap_io=True, pack_host=True):
        pass
    after = snapshot(model)
    for k, (kind, device, dtype, grad, value) in before.items():
        now = after[k]
        assert (type(now), now.device, now.dtype, now.requires_grad) == (kind, device, dtype, grad), k
        assert torch.equal(after[k], value), k
    assert torch.equal(model(*inputs), resident)


def cancel_on_call(n: int):
    calls = []

    def check():
        calls.append(None)
        if len(calls) == n:
            raise ProcessingInterrupted("cancelled by the test")

    return check


@pytest.mark.parametrize("interrupt_first", [True, False])
@pytest.mark.parametrize("cancel_at", [1, 3, 7])
def test_cancelled_forward_leaves_model_reusable(deep_model, interrupt_first, cancel_at):
    model, inputs = deep_model
    resident = model(*inputs)
    interrupt, swapper = InterruptObserver(), BlockSwapper(model, 6, "cpu", swap_io=True)
    if interrupt_first:
        model.add_observer(interrupt)
    with swapper, observing(model, interrupt) if not interrupt_first else observing(model):
        homes = {k: v.data_ptr() for k, v in model.state_dict().items()}
        with interrupt_checks(cancel_on_call(cancel_at)), pytest.raises(ProcessingInterrupted):
            model(*inputs)
        assert {k: v.data_ptr() for k, v in model.state_dict().items()} == homes
        assert torch.equal(model(*inputs), resident)
        assert swapper.bytes_last_forward == swapper.swapped_bytes
    model.remove_observer(interrupt)
    assert model.observers == []


def test_failure_inside_a_swapped_block_leaves_model_reusable(deep_model):
    model, inputs = deep_model
    resident = model(*inputs)

    def fail(module, args):
        raise RuntimeError("simulated out of memory")

    with BlockSwapper(model, 9, "cpu", swap_io=True):
        homes = {k: v.data_ptr() for k, v in model.state_dict().items()}
        hook = model.blocks[2].register_forward_pre_hook(fail)
        try:
            with pytest.raises(RuntimeError, match="simulated"):
                model(*inputs)
        finally:
            hook.remove()
        assert {k: v.data_ptr() for k, v in model.state_dict().items()} == homes
        assert torch.equal(model(*inputs), resident)


def test_residency_moves_and_puts_back_the_originals(deep_model):
    model, _ = deep_model
    before = snapshot(model)
    with on_device(model, "meta", exclude=[model.blocks[0]]) as residency:
        inside = snapshot(model)
        assert residency.moved_bytes == sum(t.nbytes for k, t in before.items() if not k.startswith("blocks.0."))
    for k, t in inside.items():
        assert t.device.type == ("cpu" if k.startswith("blocks.0.") else "meta"), k
        assert t.dtype == before[k].dtype and type(t) is type(before[k])
    after = snapshot(model)
    assert all(after[k] is before[k] for k in before)


def test_residency_moves_tied_weights_once_for_any_module():
    """A VAE-like module with a buffer and a weight shared by two layers."""
    conv = torch.nn.Conv3d(3, 4, 3)
    module = torch.nn.Sequential(conv, torch.nn.BatchNorm3d(4), torch.nn.Conv3d(4, 3, 1))
    module[2].weight = torch.nn.Parameter(torch.randn(3, 4, 1, 1, 1))
    module.append(torch.nn.Conv3d(4, 3, 1))
    module[3].weight = module[2].weight
    before = snapshot(module)
    with on_device(module, "meta") as residency:
        assert module[3].weight is module[2].weight and module[2].weight.is_meta
        assert module[1].running_mean.is_meta and not isinstance(module[1].running_mean, torch.nn.Parameter)
        unique = {id(t): t for t in before.values()}.values()
        assert residency.moved_bytes == sum(t.nbytes for t in unique)
    after = snapshot(module)
    assert all(after[k] is before[k] for k in before)


@pytest.mark.parametrize("bad", [-1, 10, 1.5, True, "all"])
def test_bad_block_count_is_refused(deep_model, bad):
    with pytest.raises(InputError, match="blocks_to_swap"):
        BlockSwapper(deep_model[0], bad, "cpu")


def test_missing_gpu_is_a_clear_error(deep_model):
    missing = f"cuda:{torch.cuda.device_count()}"  # no CUDA at all, or one index past the last GPU
    with pytest.raises(InputError, match="no usable CUDA|does not exist"):
        BlockSwapper(deep_model[0], 2, missing)
    with pytest.raises(InputError, match="no usable CUDA|does not exist"):
        on_device(deep_model[0], missing)


def test_second_swapper_on_the_same_model_is_refused(deep_model):
    model, _ = deep_model
    with BlockSwapper(model, 2, "cpu"):
        with pytest.raises(InputError, match="already"):
            BlockSwapper(model, 3, "cpu").attach()
    assert model.observers == []


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="swapping to a GPU needs CUDA (none here)")


class OnDevice:
    """Records whether every tensor of each block is on CUDA when the block runs."""

    def __init__(self):
        self.seen = {}

    def before_block(self, index, block):
        self.seen[index] = all(t.is_cuda for t in block.state_dict().values())

    def after_block(self, index, block):
        pass


@needs_cuda
@pytest.mark.parametrize("blocks,swap_io", [(4, False), (9, True)])
def test_cuda_swapping_matches_resident(deep_model, blocks, swap_io):
    """Pinned homes, side-stream copies and events: identical outputs, also after a cancelled forward."""
    model, inputs = deep_model
    inputs = (inputs[0].cuda(), inputs[1].cuda(), *inputs[2:])
    with on_device(model, "cuda"):
        resident = model(*inputs)
    check = OnDevice()
    with BlockSwapper(model, blocks, "cuda", swap_io=swap_io) as swapper, observing(model, check, InterruptObserver()):
        assert all(t.is_pinned() for b in model.blocks[:blocks] for t in b.state_dict().values())
        outs = [model(*inputs), model(*inputs)]
        assert swapper.bytes_last_forward == unit_bytes(model, blocks, swap_io)
        with interrupt_checks(cancel_on_call(3)), pytest.raises(ProcessingInterrupted):
            model(*inputs)
        outs.append(model(*inputs))
    assert all(check.seen.values()) and len(check.seen) == len(model.blocks)
    assert all(torch.equal(out, resident) for out in outs)
    assert all(t.device.type == "cpu" for t in model.state_dict().values())
