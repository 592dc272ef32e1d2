"""The phases of a batch (encode, DiT step, decode) run on the compute device under a memory plan.

A `Runtime` owns the models of a run and where their weights are. Without `MemoryOptions` it runs them
as placed (the default of `restore_stream`). With them, `prepare` (the preflight) picks a plan for the
frame size and logs it in one line, or refuses with `MemoryPlanError`; each phase call then puts the right
weights on the device (the DiT and the VAE take turns when the plan says so; the block swapper is attached
per plan) and runs. On an out-of-memory error the phase is retried once with the next lighter plan
(`memory_plan.lighter_plan`), which later batches keep; the warning says what happened.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, TypeVar

import torch

from . import cpu_pack, host
from .errors import MemoryPlanError
from .memory import dit_weights, module_bytes
from .memory_options import MemoryOptions, format_bytes
from .memory_plan import MemoryPlan, PlanModels, PlanSearch, Target, Workload, lighter_plan
from .offload import BlockSwapper
from .phases import TileProgress, decode_batch, encode_batch, sample_batch
from .residency import ModuleResidency, resolve_device, same_device, tensor_groups
from .vae.tiling import VAETiling

log = logging.getLogger(__name__)
R = TypeVar("R")

PHASES = {"encode": "encode", "sample": "DiT step", "decode": "decode"}
FREE_HEADROOM = 0.9  # of the free memory: the allocator's fragmentation and what no estimate sees
HOST = torch.device("cpu")


def _device_of(module) -> torch.device:
    return next(t.device for _, t in tensor_groups(module))


def _bytes_on(module, device: torch.device) -> int:
    return sum(t.nbytes for _, t in tensor_groups(module) if same_device(t.device, device))


class Runtime:
    """The models of a run, where their weights are, and the memory plan (see the module docstring).

    device: the compute device (default: the host's, e.g. the CUDA GPU); memory: None runs the models
    where they are, without a plan. A planned runtime moves the models' weights home to host memory when
    the device has its own memory, and places them per plan; `close()` (or `with`) puts them back home.
    """

    def __init__(self, dit, vae, device: torch.device | str | None = None, memory: MemoryOptions | None = None):
        self.dit, self.vae, self.memory = dit, vae, memory
        self.device = resolve_device(device) if device is not None else (
            host.compute_device() if memory is not None else _device_of(dit))
        kind = "auto" if memory is None else memory.device_memory
        self.separate = self.device.type not in ("cpu", "mps") if kind == "auto" else kind == "separate"
        self.plan: MemoryPlan | None = None
        self.phase: str | None = None  # the phase running now ("encode", "sample", "decode")
        self.where = ""  # what the phases are working on, for messages (e.g. "frames 0-20")
        self.measured: dict[str, int] = {}  # CUDA: peak device bytes of each phase's latest run
        self._search: PlanSearch | None = None
        self._dit_place: ModuleResidency | BlockSwapper | None = None
        self._vae_place: ModuleResidency | None = None
        self._packing: contextlib.ExitStack | None = None  # the DiT's packed CPU weights, once made
        self._pack_checked = False
        if memory is not None:
            self._home_models()

    # -- preflight --------------------------------------------------------------------------------

    def prepare(self, height: int, width: int, frames: int, txt_len: int, color_fix: str = "wavelet",
                overlap: int = 0) -> MemoryPlan | None:
        """Preflight for batches of `frames` frames at model size height x width (multiples of 16): pick
        the plan, log it in one line and return it; MemoryPlanError if none fits. None without a plan."""
        if self.memory is None:
            return None
        models = PlanModels(self.dit.config, dit_weights(self.dit), self.dit.compute_dtype, self.vae,
                            module_bytes(self.vae), self.vae.compute_dtype, self._varlen())
        work = Workload(height, width, txt_len, color_fix, overlap)
        if self.memory.budget is None:
            # Inside ComfyUI, first ask it to make room for the fastest plan (it unloads other models).
            unlimited = PlanSearch(models, work, Target(self.device.type, self.separate, 1 << 62))
            host.request_memory(next(unlimited.plan(*k) for k in unlimited.candidates(self.memory, frames)).peak, self.device)
        budget, source = self._budget()
        self._search = PlanSearch(models, work, Target(self.device.type, self.separate, budget, source))
        plan = self._search.first_fit(self.memory, frames)
        if plan is None:
            smallest = self._search.smallest(self.memory, frames)
            raise MemoryPlanError(
                f"no memory plan fits {width}x{height} frames in the {format_bytes(budget)} budget ({source}) on "
                f"{self.device}: the smallest ({smallest.knobs()}) needs about {format_bytes(smallest.peak)} "
                f"({smallest.peak} bytes, {max(smallest.phases, key=lambda p: p.total).name}). Free memory on the "
                "device, give a larger budget (--vram-budget), or ask for a smaller output size."
            )
        self._apply(plan)
        log.info("SeedVR2 memory plan on %s: %s", self.device, plan.describe())
        return plan

    def _budget(self) -> tuple[int, str]:
        if self.memory.budget is not None:
            return self.memory.budget, "given"
        free = host.free_bytes(self.device)
        if free is None:
            raise MemoryPlanError(f"the free memory of {self.device} is unknown: give a budget (--vram-budget 8GiB)")
        ours = _bytes_on(self.dit, self.device) + _bytes_on(self.vae, self.device)
        what = "free VRAM" if self.device.type == "cuda" else "available RAM"
        return int(free * FREE_HEADROOM) + ours, f"{FREE_HEADROOM:.0%} of the {what}"

    def _varlen(self) -> bool:
        return self.dit._backend(self.device).varlen

    def _home_models(self) -> None:
        """Weights live in host memory when the device has its own; on the device when it shares the host's."""
        home = HOST if self.separate else self.device
        for name, model in (("DiT", self.dit), ("VAE", self.vae)):
            if any(not same_device(t.device, home) for _, t in tensor_groups(model)):
                log.info("moving the %s's weights to %s: the memory plan places them from there", name, home)
                model.to(home)

    # -- placement ----------------------------------------------------------------------------------

    def _apply(self, plan: MemoryPlan) -> None:
        old, self.plan = self.plan, plan
        if old is not None and (old.blocks_to_swap, old.swap_io) != (plan.blocks_to_swap, plan.swap_io):
            self._dit_off()

    def _enter(self, phase: str) -> None:
        if self.memory is None or not self.separate:
            return
        if self.plan.models_stay:
            self._vae_on()
            self._dit_on()
        elif phase == "sample":
            self._vae_off()
            self._dit_on()
        else:
            self._dit_off()
            self._vae_on()

    def _dit_on(self) -> None:
        if self._dit_place is None:
            swapped, io = self.plan.blocks_to_swap, self.plan.swap_io
            if swapped or io:
                self._dit_place = BlockSwapper(self.dit, swapped, self.device, io).attach()
            else:
                self._dit_place = ModuleResidency(self.dit, self.device).load()

    def _dit_off(self) -> None:
        place, self._dit_place = self._dit_place, None
        if isinstance(place, BlockSwapper):
            place.detach()
        elif place is not None:
            place.unload()

    def _vae_on(self) -> None:
        if self._vae_place is None:
            self._vae_place = ModuleResidency(self.vae, self.device).load()

    def _vae_off(self) -> None:
        place, self._vae_place = self._vae_place, None
        if place is not None:
            place.unload()

    def _pack_dit(self) -> None:
        """On the CPU, make the oneDNN-packed copies of the DiT's 16-bit linear weights once, for every
        later step (cpu_pack.py), if the RAM the plan leaves (or, without a plan, the free RAM) holds them."""
        if self._pack_checked or self.device.type != "cpu" or self.separate:
            return
        self._pack_checked = True
        need = cpu_pack.packed_bytes(self.dit, self.dit.compute_dtype)
        if need == 0:
            return
        if self.plan is not None:
            spare = self._budget()[0] - self.plan.peak
        else:
            spare = int((host.free_bytes(self.device) or 0) * FREE_HEADROOM)
        if need > spare:
            log.info("DiT weights not packed for oneDNN: the copies need %s, %s of RAM is spare",
                     format_bytes(need), format_bytes(max(spare, 0)))
            return
        self._packing = contextlib.ExitStack()
        count = self._packing.enter_context(cpu_pack.packed_linears(self.dit, self.dit.compute_dtype))
        log.info("DiT: %d linear weights packed for oneDNN (%s more RAM) for this run", count, format_bytes(need))

    def close(self) -> None:
        """Put every weight back home (host memory, or where it was without a plan); drop packed copies."""
        packing, self._packing = self._packing, None
        if packing is not None:
            packing.close()
        self._dit_off()
        self._vae_off()

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the phases ---------------------------------------------------------------------------------

    def _tiling(self) -> VAETiling | None:
        return None if self.plan is None else self.plan.vae_tiling

    def encode(self, video: torch.Tensor, start: int, noise, progress: TileProgress | None = None) -> torch.Tensor:
        """video (3, T = 4n+1, H, W) in [-1, 1] -> condition latent (T', H/8, W/8, 16), float32, on the device."""
        return self._run("encode", lambda: encode_batch(self.vae, video, start, noise, progress, self._tiling()))

    def sample(self, cond: torch.Tensor, start: int, noise, text: torch.Tensor) -> torch.Tensor:
        """Condition latent (T', h, w, 16) -> restored latent x_0 (T', h, w, 16), float32, on the device."""
        self._pack_dit()
        return self._run("sample", lambda: sample_batch(self.dit, cond, start, noise, text, self.device))

    def decode(self, x0: torch.Tensor, frames: int, progress: TileProgress | None = None) -> torch.Tensor:
        """Restored latent -> the first `frames` frames (frames, 3, H, W) in [-1, 1], float32, in host memory."""
        return self._run("decode", lambda: decode_batch(self.vae, x0, frames, progress, self._tiling()).cpu().float())

    def _run(self, phase: str, call: Callable[[], R]) -> R:
        self.phase = phase
        try:
            for attempt in (1, 2):
                try:
                    self._enter(phase)  # placing weights can run out of memory too
                    return self._measured(phase, call)
                except torch.OutOfMemoryError as error:
                    if attempt == 2 or self.plan is None:
                        raise MemoryPlanError(self._oom_message(phase, error)) from error
                    failure = str(error).splitlines()[0]
                # Out of the handler: the failed attempt's tensors went with its frames.
                self._retry_with_lighter_plan(phase, failure)
        finally:
            self.phase = None
        raise AssertionError("unreachable")

    def _measured(self, phase: str, call: Callable[[], R]) -> R:
        """call(), recording its peak device bytes on CUDA (the figure the plan's estimate is checked against)."""
        if self.device.type != "cuda":
            return call()
        torch.cuda.reset_peak_memory_stats(self.device)
        result = call()
        self.measured[phase] = torch.cuda.max_memory_allocated(self.device)
        if self.plan is not None:
            estimate = self.plan.phase(PHASES[phase]).total
            log.debug("%s %s: peak %s, estimated %s (%.2f)", PHASES[phase], self.where,
                      format_bytes(self.measured[phase]), format_bytes(estimate), estimate / max(1, self.measured[phase]))
        return result

    def _retry_with_lighter_plan(self, phase: str, failure: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        old = self.plan
        lighter = lighter_plan(self._search, old, PHASES[phase], self.memory)
        what = (f"out of memory in the {PHASES[phase]} {self.where} with {old.knobs()} "
                f"(estimated {format_bytes(old.phase(PHASES[phase]).total)}): {failure}")
        if lighter is None:
            raise MemoryPlanError(f"{what}. No lighter plan is left at this batch size: lower the budget "
                                  "(--vram-budget) or the batch size, or free memory on the device.")
        log.warning("SeedVR2: %s. Retrying once with %s (estimated %s); later batches keep it.", what,
                    lighter.knobs(), format_bytes(lighter.phase(PHASES[phase]).total))
        self._apply(lighter)

    def _oom_message(self, phase: str, error: BaseException) -> str:
        first = str(error).splitlines()[0]
        if self.plan is None:
            return (f"out of memory in the {PHASES[phase]} {self.where} ({first}). The models ran as placed, "
                    "without a memory plan: run with one (MemoryOptions, --vram-budget auto) to swap blocks and "
                    "tile the VAE.")
        return (f"out of memory again in the {PHASES[phase]} {self.where} after retrying with {self.plan.knobs()} "
                f"({first}). Lower the budget (--vram-budget) or the batch size, or free memory on the device.")
