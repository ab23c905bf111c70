"""What the receiver process tells the daemon's worker, in stream order: small typed messages, one
class per kind. They travel pickled over a private ``ipc://`` socket (in a directory only the
daemon's user can enter); a block's samples travel in the shared-memory ring, not in the message."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtdecode.stream.continuity import Anomaly


@dataclass(slots=True)
class BlockItem:
    """One assembled block given by value (samples x channels, uV; the worker owns this copy)."""

    first_sample: int
    data: np.ndarray
    arrival_ns: int


@dataclass(slots=True)
class RingBlockItem:
    """Block number ``seq`` of the shared-memory ring (read in place, released after processing)."""

    seq: int


@dataclass(slots=True)
class TtlItem:
    line: int  # 0-based, as on the wire
    state: int
    sample: int
    arrival_ns: int
    source_node: int | None = None  # the GUI processor that emitted it (ZMQ Interface events carry it)


@dataclass(slots=True)
class AnomaliesItem:
    """Stream problems the assembler found (gaps, incomplete blocks, restarts, duplicates)."""

    anomalies: list[Anomaly]
    arrival_ns: int


@dataclass(slots=True)
class LostItem:
    """Blocks the receiver could not hand over (the ring was full: the worker fell behind): their
    span is degraded. Consecutive refused blocks travel as one span."""

    start: int
    end: int
    arrival_ns: int


@dataclass(slots=True)
class FitItem:
    """The receiver's verdict on the stream changed: ``reason`` is None when it fits again."""

    reason: str | None


@dataclass(slots=True)
class LogItem:
    """A line for the daemon's log (warnings of the receiver process)."""

    text: str


@dataclass(slots=True)
class ReceiverReady:
    """The receiver process is up, its SUB socket connecting (``connected``: the handshake with a
    publisher completed within the wait; False when none is there yet)."""

    pid: int
    connected: bool


@dataclass(slots=True)
class ReceiverCounters:
    """The receiver's counters (parser, gate, assembler, ring), sent a few times a second and last."""

    counters: dict
    samples_received: int
    first_block_ns: int | None
    cpu_s: float
    final: bool = False
    streams: dict | None = None  # every stream on offer: name -> channels, sample rate, messages
    pid: int = 0  # the process that counted (a replacement counts from zero: the daemon sums them)


WorkerItem = BlockItem | RingBlockItem | TtlItem | AnomaliesItem | LostItem
ReceiverEvent = WorkerItem | FitItem | LogItem | ReceiverCounters | ReceiverReady
