"""TTL onsets -> trials; a trial closes once the sorted stream has passed its window end.

Windows are half-open ``[onset + start, onset + end)`` in integer samples, for the response and
the baseline (which may precede the onset), counted by ``core.responses`` as in the builder.
Spikes are kept only as long as an open trial can
still need them. A trial whose span overlaps a stream anomaly (lost messages, a sample gap, an
incomplete block, a restart, a dropped block) is closed degraded, with its reasons
(:class:`~rtdecode.degraded.Degraded`), and is never decoded as if whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rtdecode.core.responses import trial_counts
from rtdecode.degraded import Degraded


@dataclass
class ClosedTrial:
    onset_sample: int
    response_counts: np.ndarray  # (units,) int64
    baseline_counts: np.ndarray  # (units,) int64
    degraded: list[Degraded] = field(default_factory=list)
    closed_ns: int = 0

    @property
    def n_spikes(self) -> int:
        return int(self.response_counts.sum())

    @property
    def n_units_active(self) -> int:
        return int((self.response_counts > 0).sum())


class TrialTracker:
    def __init__(self, n_units: int, ttl_line: int, response: tuple[int, int], baseline: tuple[int, int]) -> None:
        self.n_units = int(n_units)
        self.ttl_line = int(ttl_line)
        self.response = response
        self.baseline = baseline
        self.first = min(response[0], baseline[0])  # earliest sample of a trial, relative to onset
        self.last = max(response[1], baseline[1])  # end (exclusive)
        self.pending: list[int] = []
        self.spike_samples = np.empty(0, np.int64)
        self.spike_units = np.empty(0, np.int64)
        self.anomalies: list[tuple[int, int, Degraded]] = []
        self.counters = {"onsets": 0, "closed": 0, "degraded": 0}
        self.unit_spikes = np.zeros(n_units, dtype=np.int64)  # spikes per unit so far (the dashboard's rates)

    def on_ttl(self, line: int, state: int, sample: int) -> None:
        if line == self.ttl_line and state:
            self.pending.append(int(sample))
            self.counters["onsets"] += 1

    def on_anomaly(self, start: int, end: int, reason: Degraded) -> None:
        self.anomalies.append((int(start), int(max(end, start + 1)), reason))

    def on_restart(self, reason: Degraded = Degraded.RESTART) -> list[ClosedTrial]:
        """Close every pending trial as degraded: their sample numbers belong to a finished run."""
        closed = [self._close(o, [reason]) for o in self.pending]
        self.pending = []
        self.spike_samples = np.empty(0, np.int64)
        self.spike_units = np.empty(0, np.int64)
        self.anomalies = []
        return closed

    def add_spikes(self, samples: np.ndarray, units: np.ndarray) -> None:
        if len(samples):
            self.unit_spikes += np.bincount(units, minlength=len(self.unit_spikes))[: len(self.unit_spikes)]
            self.spike_samples = np.concatenate([self.spike_samples, samples])
            self.spike_units = np.concatenate([self.spike_units, units])

    def _close(self, onset: int, degraded: list[Degraded]) -> ClosedTrial:
        self.counters["closed"] += 1
        if degraded:
            self.counters["degraded"] += 1
        response, baseline = trial_counts(
            self.spike_samples, self.spike_units, self.n_units, np.array([onset]), [self.response, self.baseline]
        )
        return ClosedTrial(onset, response[0], baseline[0], degraded)

    def close_all(self, reason: Degraded) -> list[ClosedTrial]:
        """Close every pending trial as degraded (the stream ended or the daemon stops)."""
        closed = [self._close(o, [reason]) for o in self.pending]
        self.pending = []
        return closed

    def close_ready(self, sorted_until: int | None, stream_start: int | None = None) -> list[ClosedTrial]:
        """Trials whose whole span lies before ``sorted_until``."""
        if sorted_until is None or not self.pending:
            return []
        out, keep = [], []
        for onset in self.pending:  # a handful of open trials at most
            if onset + self.last > sorted_until:
                keep.append(onset)
                continue
            lo, hi = onset + self.first, onset + self.last
            reasons = sorted({r for a, b, r in self.anomalies if a < hi and b > lo})
            if stream_start is not None and lo < stream_start:
                reasons.append(Degraded.WINDOW_BEFORE_STREAM)
            out.append(self._close(onset, reasons))
        self.pending = keep
        horizon = min([o + self.first for o in keep], default=sorted_until + self.first)
        if len(self.spike_samples) and self.spike_samples[0] < horizon:
            k = int(np.searchsorted(self.spike_samples, horizon))
            self.spike_samples, self.spike_units = self.spike_samples[k:], self.spike_units[k:]
        self.anomalies = [a for a in self.anomalies if a[1] > horizon]
        return out
