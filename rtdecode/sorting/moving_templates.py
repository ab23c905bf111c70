"""Keeps the matcher's templates where the motion tracker says the units now are.

The tracker re-estimates the displacement once per window of stream. When the estimate (rounded to
``resolution_um``) differs from the one the templates are moved to by ``step_um`` or more, a matcher
with the templates moved there (:meth:`TemplateMatcher.moved`, tens to hundreds of ms at 384
channels) is built in a background thread, so the hot path never pays for it. It takes over at a
point fixed in *stream samples* -- the first span the sorter matches from ``delay_s`` after the
estimate's sample -- not when the thread happens to finish: the same stream in the same blocks
gives the same spikes, live or offline (``rtdecode decode``), however loaded the machine. Live, the
thread is long done by then; offline, faster than real time, the sorter waits for it there.

Only one move is in flight; the next estimate is compared once it has taken over. Detection does
not use the moved templates (a threshold on the noise; pooled detection keeps the calibration
templates' trough width), so the tracker's estimates do not depend on the moves: there is no
feedback loop to run away. The build runs its linear algebra on one thread, so
it never takes the cores of the hot path and the receiver.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

from threadpoolctl import threadpool_limits

from rtdecode.sorting.matcher import TemplateMatcher


class MovingTemplates:
    def __init__(
        self,
        calibration: TemplateMatcher,
        sample_rate: float,
        step_um: float = 3.0,
        resolution_um: float = 1.0,
        delay_s: float = 0.5,
    ) -> None:
        self.calibration = calibration
        self._current = calibration
        self.step_um = float(step_um)
        self.resolution_um = float(resolution_um)
        self.delay = max(0, int(round(delay_s * sample_rate)))
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[Future, float, int] | None = None  # (matcher, target um, takes over at sample)
        self._seen_estimates = 0
        self.moves = 0
        self.build_s = 0.0  # time spent building moved matchers (in the background thread)
        self.waited_s = 0.0  # time the sorter waited for one (only when the stream outruns the thread)

    @property
    def applied_um(self) -> float:
        """How far the templates in use are moved from the calibration position."""
        return self._current.displacement_um

    def _build(self, target: float) -> TemplateMatcher:
        t0 = time.perf_counter()
        # on one core: a multi-threaded BLAS here would take the cores of the hot path and the receiver
        with threadpool_limits(limits=1, user_api="blas"):
            m = self.calibration.moved(target)
        self.build_s += time.perf_counter() - t0
        return m

    def after_estimate(self, tracker) -> None:
        """Look at the tracker after it was fed: a new estimate far enough from the applied one starts
        building a matcher for it."""
        if tracker.estimates == self._seen_estimates or tracker.displacement_um is None:
            return
        self._seen_estimates = tracker.estimates
        if self._pending is not None:
            return
        r = self.resolution_um
        target = round(tracker.displacement_um / r) * r
        if abs(target - self.applied_um) < self.step_um:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="rtdecode-moving-templates")
        self._pending = (self._pool.submit(self._build, target), target, tracker.estimated_at + self.delay)

    def matcher_for(self, span_start: int, current: TemplateMatcher) -> TemplateMatcher:
        """The matcher for a span starting at stream sample ``span_start``: ``current``, or the moved
        one once its take-over sample is reached."""
        if self._pending is None or span_start < self._pending[2]:
            return current
        future = self._pending[0]
        self._pending = None
        t0 = time.perf_counter()
        matcher = future.result()
        self.waited_s += time.perf_counter() - t0
        self._current = matcher
        self.moves += 1
        return matcher

    def stream_cut(self) -> None:
        """Sample numbers may start again (a gap, a restart): a pending move takes over with the next
        span instead of at a sample that may never come."""
        if self._pending is not None:
            future, target, _ = self._pending
            self._pending = (future, target, -(1 << 62))

    def status(self) -> dict:
        return {
            "applied_um": self.applied_um,
            "moves": self.moves,
            "pending_um": None if self._pending is None else self._pending[1],
            "build_s": round(self.build_s, 3),
            "waited_s": round(self.waited_s, 3),
        }
