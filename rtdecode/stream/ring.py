"""A preallocated shared-memory ring of blocks: one writer (the receiver process), one reader (the worker).

Layout of the one POSIX shared-memory segment (``/dev/shm/rtdecode-ring-<pid>-<run>``)::

    int64[8]                      header: [0] blocks written, [1] blocks released by the reader
    int64[slots, 3]               per slot: first sample, samples, arrival (monotonic ns)
    float32[slots, samples, ch]   the blocks, channel-minor (a block is one contiguous slab)

The writer fills slot ``w % slots`` and then advances ``written``; the reader takes slot
``r % slots`` as a view (no copy), and advances ``released`` when it is done with it. The writer
never waits: when ``written - released == slots`` the ring is full, and the block is refused
(the caller counts an overrun and marks the span lost). The reader learns of a new block from a
message on the receiver's event socket sent after the write, so the block's bytes are in memory
before the reader looks (a system call lies between the two).

Segments are named after the daemon's pid, so a new daemon removes what a dead one left
(:func:`remove_stale_segments`); the creator unlinks on close.
"""

from __future__ import annotations

import os
import re
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path

import numpy as np

PREFIX = "rtdecode-ring-"
SHM_DIR = Path("/dev/shm")
HEADER = 8
META = 3
_NAME = re.compile(rf"^{PREFIX}(\d+)-[0-9a-f]+$")


def segment_name(run_id: str, pid: int | None = None) -> str:
    return f"{PREFIX}{os.getpid() if pid is None else pid}-{run_id}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_segments() -> list[str]:
    """Unlink the rings of daemons that are no longer running (killed with ``kill -9``, crashed);
    the names removed."""
    removed = []
    if not SHM_DIR.is_dir():
        return removed
    for path in SHM_DIR.iterdir():
        m = _NAME.match(path.name)
        if m and not _alive(int(m.group(1))):
            try:
                path.unlink()
                removed.append(path.name)
            except OSError:
                pass
    return removed


def ring_bytes(slots: int, slot_samples: int, n_channels: int) -> int:
    return 8 * (HEADER + META * slots) + 4 * slots * slot_samples * n_channels


class BlockRing:
    """One side of the ring. ``create=True`` on the daemon's side (it owns and unlinks the segment),
    ``create=False`` in the receiver process (it attaches by name)."""

    def __init__(self, name: str, slots: int, slot_samples: int, n_channels: int, create: bool) -> None:
        if slots < 2 or slot_samples < 1 or n_channels < 1:
            raise ValueError(f"a ring needs >= 2 slots, >= 1 sample and channel: {slots}, {slot_samples}, {n_channels}")
        self.name = name
        self.slots = int(slots)
        self.slot_samples = int(slot_samples)
        self.n_channels = int(n_channels)
        self.owner = create
        size = ring_bytes(self.slots, self.slot_samples, self.n_channels)
        if create:
            self._shm = shared_memory.SharedMemory(name=name, create=True, size=size)
        else:
            self._shm = shared_memory.SharedMemory(name=name, create=False)
            # Python < 3.13 registers an attached segment with this process's own resource tracker,
            # which would unlink it when the receiver exits; the daemon owns it.
            resource_tracker.unregister(self._shm._name, "shared_memory")
            if self._shm.size < size:
                raise ValueError(f"shared memory {name} holds {self._shm.size} bytes, expected {size}")
        buf = self._shm.buf
        self.header = np.ndarray((HEADER,), np.int64, buf, 0)
        self.meta = np.ndarray((self.slots, META), np.int64, buf, 8 * HEADER)
        self.data = np.ndarray(
            (self.slots, self.slot_samples, self.n_channels), np.float32, buf, 8 * (HEADER + META * self.slots)
        )
        if create:
            self.header[:] = 0

    # -- writer ----------------------------------------------------------------------------------
    @property
    def written(self) -> int:
        return int(self.header[0])

    @property
    def released(self) -> int:
        return int(self.header[1])

    @property
    def fill(self) -> int:
        """Blocks written and not yet released by the reader."""
        return int(self.header[0] - self.header[1])

    def write(self, first_sample: int, block: np.ndarray, arrival_ns: int) -> int | None:
        """Copy one (samples <= slot_samples, channels) block into the next slot; its sequence
        number, or None if the ring is full (nothing written)."""
        w = int(self.header[0])
        if w - int(self.header[1]) >= self.slots:
            return None
        n = len(block)
        if n > self.slot_samples:
            raise ValueError(f"a block of {n} samples does not fit a slot of {self.slot_samples}")
        i = w % self.slots
        self.data[i, :n] = block
        self.meta[i] = (first_sample, n, arrival_ns)
        self.header[0] = w + 1
        return w

    def reset(self) -> None:
        """Forget every block (a new receiver process starts on an empty ring)."""
        self.header[1] = self.header[0]

    # -- reader ----------------------------------------------------------------------------------
    def view(self, seq: int) -> tuple[int, np.ndarray, int]:
        """(first sample, block view, arrival ns) of block ``seq``; valid until :meth:`release`."""
        i = seq % self.slots
        first, n, arrival = (int(v) for v in self.meta[i])
        return first, self.data[i, :n], arrival

    def release(self, seq: int) -> None:
        self.header[1] = seq + 1

    def close(self) -> None:
        self.header = self.meta = self.data = None
        try:
            self._shm.close()
        except BufferError:  # a view still alive somewhere: the mapping goes with the process
            pass
        if self.owner:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass
