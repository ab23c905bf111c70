"""Every span of stream the pipeline did not see whole: its sample range, its cause, what it costs.

A span comes from the receiver (lost or out-of-order messages, an incomplete block, the ring full
when the worker fell behind) or from the pipeline itself (the next block does not start where the
last ended: the receiver process was replaced, or data went missing without a message number to
show it). Spans are kept per segment and in stream order; a span that overlaps one already counted
(the receiver and the pipeline both saw the same hole) counts only its new part, so the seconds
lost add up.

Where the stream's *events* travelled the same way as the lost samples (upstream drops, a replaced
receiver), stimulus onsets inside the span may never have reached us: such a gap says so, and the
daemon's log names it, so an onset missing from the decisions is explained. A ring overrun loses
samples only (TTL events bypass the ring): its onsets are decided, degraded.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from rtdecode.degraded import Degraded

#: Gaps kept in memory for ``status`` (their totals are kept regardless).
KEEP_RECENT = 100


@dataclass(frozen=True, slots=True)
class Gap:
    segment: int
    start_sample: int
    end_sample: int
    cause: Degraded
    sample_rate: float
    samples_lost: int  # samples of the span not seen (a span of lost events only has none)

    @property
    def seconds(self) -> float:
        return self.samples_lost / self.sample_rate

    @property
    def onsets_may_be_missing(self) -> bool:
        return self.cause.events_may_be_lost

    def record(self) -> dict:
        return {
            "segment": self.segment,
            "start_sample": self.start_sample,
            "end_sample": self.end_sample,
            "seconds": round(self.seconds, 6),
            "cause": self.cause.value,
            "onsets_may_be_missing": self.onsets_may_be_missing,
        }


class GapLedger:
    def __init__(self, sample_rate: float) -> None:
        self.sample_rate = float(sample_rate)
        self.count = 0
        self.samples_by_cause: Counter[Degraded] = Counter()
        self.recent: list[Gap] = []
        self._new: list[Gap] = []
        self._segment = 1
        self._covered_until: int | None = None  # the end of the latest span counted in this segment
        self._data_until: int | None = None  # the end of the latest samples counted lost in this segment
        self._open: tuple[int, int, Degraded] | None = None  # a span whose samples end where data resumes
        self.covering_cause: Degraded | None = None  # the cause of the span that reached _covered_until

    def new_segment(self, segment: int) -> None:
        self.settle()
        self._segment = segment
        self._covered_until = self._data_until = None
        self.covering_cause = None

    def add(self, start: int, end: int, cause: Degraded, data_end: int | None = None) -> Gap | None:
        """Samples ``[start, end)`` were not seen whole; returns the gap counted (None: nothing new).
        ``data_end`` (default ``end``): where the samples lost end, when the span reaches further to
        cover events. A span reported before data resumes ends the open one's samples at ``start``."""
        self.settle(start)
        return self._count(int(start), int(end), cause, int(end) if data_end is None else int(data_end))

    def open(self, start: int, end: int, cause: Degraded) -> None:
        """Events and samples from ``start`` were lost, and the report (lost messages revealed by the
        message at ``end - 1``, which may be an event inside a block that will come whole) cannot
        know where the samples lost end: they end where data resumes (:meth:`settle`). Counted then."""
        self.settle(start)
        self._open = (int(start), int(end), cause)

    def settle(self, data_resumes: int | None = None) -> Gap | None:
        """Data resumes at ``data_resumes`` (None: it never did, e.g. the stream ended; no samples are
        counted lost for the open span): the open span, if any, is counted now, reaching that far."""
        if self._open is None:
            return None
        (start, end, cause), self._open = self._open, None
        data_end = start if data_resumes is None else max(start, int(data_resumes))
        return self._count(start, max(end, data_end), cause, data_end)

    def _count(self, start: int, end: int, cause: Degraded, data_end: int) -> Gap | None:
        data_end = min(data_end, end)
        data_from = start if self._data_until is None else max(start, self._data_until)
        samples = max(0, data_end - data_from)
        first = data_from if samples else (start if self._covered_until is None else max(start, self._covered_until))
        if end <= first:
            return None
        gap = Gap(self._segment, first, end, cause, self.sample_rate, samples)
        if self._covered_until is None or end >= self._covered_until:
            self._covered_until, self.covering_cause = end, cause
        if samples:
            self._data_until = data_end
        self.count += 1
        self.samples_by_cause[cause] += samples
        self.recent = [*self.recent[-(KEEP_RECENT - 1) :], gap]
        self._new.append(gap)
        return gap

    def take_new(self) -> list[Gap]:
        """The gaps counted since the last call (the daemon logs each once)."""
        new, self._new = self._new, []
        return new

    @property
    def lost_s(self) -> float:
        return sum(self.samples_by_cause.values()) / self.sample_rate

    def summary(self) -> dict:
        fs = self.sample_rate
        by_cause = sorted(self.samples_by_cause.items())  # one copy: status() reads while the worker adds
        return {
            "count": self.count,
            "lost_s": round(sum(n for _, n in by_cause) / fs, 6),
            "lost_s_by_cause": {c.value: round(n / fs, 6) for c, n in by_cause},
            "onsets_may_be_missing": any(c.events_may_be_lost for c, _ in by_cause),
        }
