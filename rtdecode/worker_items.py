"""What the daemon's receiver hands its worker: small typed messages, one class per kind."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtdecode.stream.assembler import Anomaly


@dataclass(slots=True)
class BlockItem:
    """One assembled block (samples x channels, uV; the worker owns this copy)."""

    first_sample: int
    data: np.ndarray
    arrival_ns: int


@dataclass(slots=True)
class TtlItem:
    line: int  # 0-based, as on the wire
    state: int
    sample: int
    arrival_ns: int


@dataclass(slots=True)
class AnomaliesItem:
    """Stream problems the assembler found (gaps, incomplete blocks, restarts, duplicates)."""

    anomalies: list[Anomaly]
    arrival_ns: int


@dataclass(slots=True)
class LostItem:
    """A block the receiver could not queue (the worker fell behind): its span is degraded."""

    start: int
    end: int
    arrival_ns: int
    reason: str = "queue overrun"


WorkerItem = BlockItem | TtlItem | AnomaliesItem | LostItem
