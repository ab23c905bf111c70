"""The receiver's counters over the whole run, across replacements of its process.

Each receiver process counts from zero and reports its running totals a few times a second
(:class:`~rtdecode.stream.items.ReceiverCounters`, tagged with its pid). A process that dies takes
nothing with it: its last report is kept, and the run's totals are the sum over every process
(high-water marks: the maximum; the first block: the first process's).
"""

from __future__ import annotations

from rtdecode.stream.items import ReceiverCounters

#: Counters that are levels, not counts: combined by maximum.
MAXIMA = frozenset({"ring_high_water"})


class ReceiverTotals:
    def __init__(self) -> None:
        self._by_pid: dict[int, ReceiverCounters] = {}
        self.latest = ReceiverCounters({}, 0, None, 0.0)

    def update(self, report: ReceiverCounters) -> None:
        self._by_pid[report.pid] = report
        self.latest = report

    def _reports(self) -> list[ReceiverCounters]:
        return list(self._by_pid.values())  # one copy: status() reads while the worker updates

    @property
    def processes(self) -> int:
        return len(self._by_pid)

    @property
    def final(self) -> bool:
        """The current process sent its last report (it is stopping)."""
        return self.latest.final

    @property
    def counters(self) -> dict:
        out: dict = {}
        for report in self._reports():
            for k, v in report.counters.items():
                out[k] = max(out.get(k, v), v) if k in MAXIMA else out.get(k, 0) + v
        return out

    @property
    def samples_received(self) -> int:
        return sum(r.samples_received for r in self._reports())

    @property
    def cpu_s(self) -> float:
        return sum(r.cpu_s for r in self._reports())

    @property
    def first_block_ns(self) -> int | None:
        firsts = [r.first_block_ns for r in self._reports() if r.first_block_ns is not None]
        return min(firsts) if firsts else None

    @property
    def streams(self) -> dict:
        return self.latest.streams or {}
