"""Block swapping: run the DiT with only a few of its blocks on the compute device at a time.

The swapped units (the first N blocks, optionally the input and output layers) keep their weights in
host memory, page-locked on CUDA and packed once at attach into a few large buffers. During a forward
each unit is copied into one of two device buffers on a dedicated copy stream just before it runs;
the next unit's copy is issued before the current one computes (double buffering), compute waits
only for its own unit's copy event, and a unit is dropped after use by putting its host tensors back
(weights do not change, so nothing is copied back). The copy stream waits for the compute that used a
buffer before overwriting it. Off CUDA the same code runs with plain synchronous copies into host
buffers, which is how the tests show that outputs are identical with swapping on and off.

The swapper is a `BlockObserver` of `NaDiT` (explicit calls in the block loop); it never rebinds
`forward` or `.to`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import InputError
from .residency import ModuleResidency, TensorSlot, resolve_device, slot_value, tensor_groups

logger = logging.getLogger(__name__)

# Byte alignment of every tensor inside the host arenas and the device buffers: CUDA kernels and
# cuBLAS pick their vectorised paths on aligned pointers.
ALIGN = 256
# Pinned host memory comes from PyTorch's caching host allocator, which rounds every allocation up to
# a power of two: many weight-sized allocations would waste up to half of it, equal 256 MiB arenas
# waste only their tails.
ARENA_BYTES = 256 << 20
IO_IN = ("vid_in", "txt_in", "emb_in")  # run before the block loop
IO_OUT = ("vid_out_norm", "vid_out_ada", "vid_out")  # run after it


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _packable(t: torch.Tensor) -> bool:
    """A plain strided contiguous tensor: its bytes can live at an offset of a shared byte buffer."""
    return type(t) in (torch.Tensor, nn.Parameter) and t.layout == torch.strided and t.is_contiguous()


def _byte_view(buffer: torch.Tensor, offset: int, like: torch.Tensor) -> torch.Tensor:
    """View of `buffer` (uint8) at `offset` with `like`'s dtype and shape."""
    return buffer[offset: offset + like.nbytes].view(like.dtype).view(like.shape)


class _HostArenas:
    """Packs plain tensors into large host buffers, page-locked when `pin`."""

    def __init__(self, pin: bool, total: int):
        self.pin, self.remaining = pin, total
        self.buffers: list[torch.Tensor] = []
        self._free = 0

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        n = _aligned(t.nbytes)
        if n > self._free:
            size = max(n, min(ARENA_BYTES, self.remaining))
            self.buffers.append(torch.empty(size, dtype=torch.uint8, pin_memory=self.pin))
            self._free = size
        buffer = self.buffers[-1]
        view = _byte_view(buffer, len(buffer) - self._free, t)
        view.copy_(t.detach())
        self._free -= n
        self.remaining -= n
        return view


@dataclass(eq=False)
class _Entry:
    """One swapped tensor: where it lives at home, and where it goes on the device."""

    slots: list[TensorSlot]
    host_value: torch.Tensor  # what the slots hold while the unit is not on the device
    original: torch.Tensor | None  # what they held before attach, when kept (no copy was made)
    original_device: torch.device
    nbytes: int
    offset: int | None = None  # in the unit's device buffer; None: moved with `.to` (quantised types)
    device_view: torch.Tensor | None = None  # that place in the device buffer (copied into)
    device_value: torch.Tensor | None = None  # the same, wrapped like host_value (installed)


@dataclass(eq=False)
class _Unit:
    """A group of modules swapped in and out together (one block, or the input / output layers)."""

    name: str
    modules: list[nn.Module]
    block: int | None = None
    entries: list[_Entry] = field(default_factory=list)
    buffer_index: int = 0
    buffer_bytes: int = 0
    nbytes: int = 0

    def install(self, moved: list[torch.Tensor]) -> None:
        """Put the device tensors into the module slots (`moved`: the `.to` copies, in entry order)."""
        it = iter(moved)
        for e in self.entries:
            value = e.device_value if e.offset is not None else slot_value(next(it), like=e.host_value)
            for slot in e.slots:
                slot.put(value)

    def uninstall(self) -> None:
        for e in self.entries:
            for slot in e.slots:
                slot.put(e.host_value)


@dataclass(eq=False)
class _InFlight:
    position: int
    ready: torch.cuda.Event | None
    moved: list[torch.Tensor]


class _CopyEngine:
    """Host-to-device copies on a side CUDA stream ordered by events; synchronous copies elsewhere."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def copying(self):
        return torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()

    def mark_ready(self) -> torch.cuda.Event | None:
        """An event on the copy stream after the copies issued so far."""
        if self.stream is None:
            return None
        event = torch.cuda.Event()
        event.record(self.stream)
        return event

    def wait_ready(self, event: torch.cuda.Event | None) -> None:
        """Compute waits for this one unit's copies, not for the whole copy stream."""
        if event is not None:
            torch.cuda.current_stream(self.device).wait_event(event)

    def retire(self) -> None:
        """Later copies wait for the compute issued so far: it may still read the buffers they overwrite."""
        if self.stream is not None:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(self.device))
            self.stream.wait_event(event)

    def finish(self) -> None:
        """Wait for all copies and compute (detach only: the device buffers return to the allocator)."""
        if self.stream is not None:
            torch.cuda.synchronize(self.device)


class BlockSwapper:
    """Keeps the first `blocks_to_swap` blocks of a NaDiT (and the input/output layers when `swap_io`)
    in host memory and brings each to `device` only while it runs; the rest of the model sits on `device`.

    `attach()` / `detach()` (or `with BlockSwapper(...)`); the model is then called as usual with inputs
    on `device`. `pin_memory` and `pack_host` default to True on CUDA: the swapped weights are copied
    once into page-locked arenas (which then stay their home, so a later attach copies nothing).
    """

    def __init__(self, model: nn.Module, blocks_to_swap: int, device: torch.device | str, swap_io: bool = False,
                 pin_memory: bool | None = None, pack_host: bool | None = None):
        blocks = getattr(model, "blocks", None)
        if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
            raise InputError(f"{type(model).__name__} has no blocks to swap (expected a NaDiT)")
        whole = isinstance(blocks_to_swap, int) and not isinstance(blocks_to_swap, bool)
        if not whole or not 0 <= blocks_to_swap <= len(blocks):
            raise InputError(f"blocks_to_swap must be an integer from 0 to {len(blocks)} (all), got {blocks_to_swap!r}")
        self.model, self.blocks_to_swap, self.swap_io = model, blocks_to_swap, swap_io
        self.device = resolve_device(device)
        on_cuda = self.device.type == "cuda"
        self.pin_memory = on_cuda if pin_memory is None else pin_memory
        self.pack_host = on_cuda if pack_host is None else pack_host
        self.bytes_last_forward = 0  # host -> device bytes of the last forward
        self.bytes_total = 0
        self.forwards = 0
        self._units: list[_Unit] = []
        self._block_unit: dict[int, int] = {}
        self._buffers: list[torch.Tensor] = []
        self._residency: ModuleResidency | None = None
        self._engine: _CopyEngine | None = None
        self._installed: int | None = None
        self._pending: _InFlight | None = None
        self._forward_bytes = 0

    # -- attach / detach -------------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        return self._engine is not None

    @property
    def swapped_bytes(self) -> int:
        """Stored bytes of all swapped tensors: what one forward copies to the device."""
        return sum(u.nbytes for u in self._units)

    @property
    def device_buffer_bytes(self) -> int:
        return sum(b.nbytes for b in self._buffers)

    def attach(self) -> "BlockSwapper":
        """Move the swapped units to their host home, the rest to `device`, and start observing."""
        if self.attached:
            return self
        if any(isinstance(o, BlockSwapper) for o in self.model.observers):
            raise InputError("this model already has a BlockSwapper attached: detach it first")
        self._units = self._plan_units()
        self._block_unit = {u.block: p for p, u in enumerate(self._units) if u.block is not None}
        try:
            # Buffers made here are written in place by every forward, which may run in inference mode.
            with torch.inference_mode(False):
                self._make_homes()
                self._residency = ModuleResidency(self.model, self.device, [m for u in self._units for m in u.modules])
                self._residency.load()
                self._make_device_buffers()
        except BaseException:
            self._buffers = []
            if self._residency is not None:
                self._residency.unload()
                self._residency = None
            self._restore_units()
            raise
        self._engine = _CopyEngine(self.device)
        self.model.add_observer(self)
        logger.info(
            "block swap: %d of %d blocks%s in %s host memory (%.2f GiB), %.2f GiB resident on %s, %.2f GiB of buffers",
            self.blocks_to_swap, len(self.model.blocks), " + io layers" if self.swap_io else "",
            "pinned" if self.pin_memory else "pageable", self.swapped_bytes / 2**30,
            self._residency.moved_bytes / 2**30, self.device, self.device_buffer_bytes / 2**30,
        )
        return self

    def detach(self) -> None:
        """Stop observing and put every tensor back on the device it had at attach (no-op when detached)."""
        if not self.attached:
            return
        self.model.remove_observer(self)
        self._drop_forward_state()
        self._engine.finish()
        self._engine = None
        self._buffers = []
        self._residency.unload()
        self._residency = None
        self._restore_units()

    def __enter__(self) -> "BlockSwapper":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    def _plan_units(self) -> list[_Unit]:
        io = lambda names: [m for m in (getattr(self.model, n, None) for n in names) if m is not None]  # noqa: E731
        units = [_Unit(f"blocks.{i}", [self.model.blocks[i]], block=i) for i in range(self.blocks_to_swap)]
        if self.swap_io:
            units = [_Unit("io_in", io(IO_IN))] + units + [_Unit("io_out", io(IO_OUT))]
        for position, unit in enumerate(units):
            unit.buffer_index = position % 2  # double buffering: consecutive units never share a buffer
        return units

    def _make_homes(self) -> None:
        """Host home of every swapped tensor (packed/pinned once), and its place in a device buffer."""
        groups = [(u, slots, t) for u in self._units for slots, t in tensor_groups(u.modules)]
        packed = lambda t: self.pack_host and _packable(t) and not (self.pin_memory and t.is_pinned())  # noqa: E731
        arenas = _HostArenas(self.pin_memory, sum(_aligned(t.nbytes) for _, _, t in groups if packed(t)))
        groups.reverse()
        while groups:
            # Popping lets each original be freed once its packed copy is in place: the host peak is
            # the swapped weights plus one arena, not twice the swapped weights.
            unit, slots, t = groups.pop()
            if packed(t):
                home = arenas.pack(t)
            else:
                home = t if t.device.type == "cpu" else t.to("cpu")
                if self.pin_memory and not home.is_pinned():
                    home = home.pin_memory()
            keep = home is t  # no copy made: restore the very same tensor at detach
            entry = _Entry(slots, t if keep else slot_value(home, like=t), t if keep else None, t.device, t.nbytes)
            for slot in slots:
                slot.put(entry.host_value)
            if _packable(home):
                entry.offset = unit.buffer_bytes
                unit.buffer_bytes += _aligned(t.nbytes)
            unit.entries.append(entry)
            unit.nbytes += t.nbytes

    def _make_device_buffers(self) -> None:
        sizes = [0, 0]
        for u in self._units:
            sizes[u.buffer_index] = max(sizes[u.buffer_index], u.buffer_bytes)
        self._buffers = [torch.empty(n, dtype=torch.uint8, device=self.device) for n in sizes[: len(self._units)]]
        for u in self._units:
            for e in u.entries:
                if e.offset is not None:
                    e.device_view = _byte_view(self._buffers[u.buffer_index], e.offset, e.host_value)
                    e.device_value = slot_value(e.device_view, like=e.host_value)

    def _restore_units(self) -> None:
        for unit in self._units:
            for e in unit.entries:
                if e.original is not None:
                    value = e.original
                elif e.original_device.type == "cpu":
                    value = e.host_value
                else:
                    value = slot_value(e.host_value.to(e.original_device), like=e.host_value)
                for slot in e.slots:
                    slot.put(value)
        self._units, self._block_unit = [], {}

    # -- the observer protocol (NaDiT.forward) -------------------------------------------------

    def begin_forward(self) -> None:
        self._drop_forward_state()
        self._forward_bytes = 0
        if not self._units:
            return
        if self.swap_io:
            self._install(0)
        else:
            # The first block's copy overlaps the embeddings and the window planning.
            self._pending = self._fetch(0)

    def before_block(self, index: int, block: nn.Module) -> None:
        position = self._block_unit.get(index)
        if self._installed is not None and self._installed != position:
            self._release()  # the input layers have run
        if position is not None and self._installed != position:
            self._install(position)

    def after_block(self, index: int, block: nn.Module) -> None:
        if index in self._block_unit:
            self._release()
        if self.swap_io and index == len(self.model.blocks) - 1:
            self._install(len(self._units) - 1)

    def end_forward(self, failed: bool) -> None:
        self._drop_forward_state()
        self.bytes_last_forward = self._forward_bytes
        self.bytes_total += self._forward_bytes
        self.forwards += 1
        if failed:
            logger.debug("block swap: forward failed; swapped weights back at their host home")

    # -- copies ---------------------------------------------------------------------------------

    def _fetch(self, position: int) -> _InFlight:
        """Issue the copies of unit `position` (on the copy stream) and return what is in flight."""
        unit = self._units[position]
        buffered = [e for e in unit.entries if e.offset is not None]
        with self._engine.copying():
            for e in buffered:
                e.device_view.copy_(e.host_value, non_blocking=True)
            # copy=True: on a CPU "device" too, the unit runs on fresh tensors, as on a GPU.
            moved = [
                e.host_value.to(self.device, non_blocking=True, copy=True) for e in unit.entries if e.offset is None
            ]
        self._forward_bytes += unit.nbytes
        return _InFlight(position, self._engine.mark_ready(), moved)

    def _install(self, position: int) -> None:
        flight = self._pending if self._pending is not None and self._pending.position == position else None
        self._pending = None
        flight = flight or self._fetch(position)
        self._engine.wait_ready(flight.ready)
        self._units[position].install(flight.moved)
        self._installed = position
        if position + 1 < len(self._units):
            self._pending = self._fetch(position + 1)  # overlaps this unit's compute

    def _release(self) -> None:
        if self._installed is None:
            return
        self._engine.retire()
        self._units[self._installed].uninstall()
        self._installed = None

    def _drop_forward_state(self) -> None:
        """Put back whatever a forward left on the device (a cancelled or failed forward leaves some)."""
        self._release()
        if self._pending is not None:
            # Its copies finish on the copy stream, which orders them before any later copy into the
            # same buffer; nothing reads them, so dropping the references is enough.
            self._pending = None
