"""Online sorting of a block stream: causal preprocessing, a buffer with margins, a matcher.

Blocks of any size go in; spikes come out once they are final. A spike at sample ``t`` needs
``margin_right`` samples after it before it can be matched, so after each block the sorter reports
``sorted_until``: every spike before that sample has been emitted. The buffer is preallocated;
each block is filtered once (state carried), appended, and the part of the buffer between the left
margin and ``end - margin_right`` is matched. A matcher provides ``margin_left``, ``margin_right``
and ``find(buffer, start, stop) -> (samples, units)``: rtdecode's own ``TemplateMatcher`` or a
SpikeInterface engine through ``SpikeInterfaceMatcher``. With a motion tracker, the matcher's own
detections feed it, and with :class:`~rtdecode.sorting.moving_templates.MovingTemplates` the
matcher is swapped for one whose templates sit where the tracker says the units are.
"""

from __future__ import annotations

import numpy as np

from rtdecode.sorting.preprocess import StreamingPreprocessor


class OnlineSorter:
    def __init__(
        self, matcher, preprocessor: StreamingPreprocessor, max_block: int = 1 << 15, motion=None, moving=None
    ) -> None:
        self.matcher = matcher
        self.pre = preprocessor
        self.motion = motion  # a MotionTracker fed the matcher's detections (needs detect/match), or None
        self.moving = moving  # a MovingTemplates that moves the matcher's templates with the tracker, or None
        self.left = matcher.margin_left
        self.right = matcher.margin_right
        cap = self.left + max_block + self.right
        self.buf = np.zeros((cap, preprocessor.n_channels), dtype=np.float32)
        self.counters = {"spikes": 0, "resets": 0}
        self.reset()

    def reset(self) -> None:
        """Start afresh (a new acquisition or after a gap): filter state and buffer cleared."""
        self.pre.reset()
        if self.motion is not None:
            self.motion.restart_clock()
        if self.moving is not None:
            self.moving.stream_cut()
        self.n = 0  # valid rows in buf
        self.buf_start = None  # absolute sample of buf[0]
        self.done = None  # absolute sample up to which spikes have been emitted

    @property
    def sorted_until(self) -> int | None:
        return self.done

    def unsorted_by(self, first_sample: int) -> tuple[int, int] | None:
        """If a block starting at ``first_sample`` does not continue the last one: the samples it
        leaves unsorted, ``[where the stream was expected to go on, the end of the margin the sorter
        needs after the jump)``. None when it continues (or nothing came yet)."""
        if self.buf_start is None or first_sample == self.buf_start + self.n:
            return None
        return self.buf_start + self.n, first_sample + self.left

    def process(self, block: np.ndarray, first_sample: int) -> tuple[np.ndarray, np.ndarray]:
        """Feed one block (samples x channels, uV) starting at ``first_sample``.

        Returns (absolute spike samples, unit indices) finalised by this block. A block that does not
        continue the previous one resets the sorter (the caller reports the gap)."""
        if self.buf_start is not None and first_sample != self.buf_start + self.n:
            self.counters["resets"] += 1
            self.reset()
        y = self.pre.process(block)
        n_new = len(y)
        if self.buf_start is None:
            self.buf_start = first_sample
            self.done = first_sample + self.left
        if self.n + n_new > len(self.buf):
            drop = max(0, (self.done - self.left) - self.buf_start)  # keep the left context of what is unsorted
            self.buf[: self.n - drop] = self.buf[drop : self.n]
            self.n -= drop
            self.buf_start += drop
            if self.n + n_new > len(self.buf):
                grown = np.zeros((self.n + n_new, self.buf.shape[1]), dtype=np.float32)
                grown[: self.n] = self.buf[: self.n]
                self.buf = grown
        self.buf[self.n : self.n + n_new] = y
        self.n += n_new
        start = self.done - self.buf_start
        stop = self.n - self.right
        if stop <= start:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        lo = start - self.left  # the matcher sees only the new span and its margins, never the whole buffer
        x = self.buf[lo : self.n]
        if self.motion is None:
            samples, units = self.matcher.find(x, self.left, self.left + stop - start)
        else:  # the matcher's own detections feed the motion estimate, then are matched
            t, chan = self.matcher.detect(x, self.left, self.left + stop - start)
            self.motion.add(x, t, chan, self.buf_start + lo, self.buf_start + stop)
            if self.moving is not None:  # templates moved with the estimate (from a fixed stream sample)
                self.moving.after_estimate(self.motion)
                self.matcher = self.moving.matcher_for(self.done, self.matcher)
            samples, units, _ = self.matcher.match(x, t, chan)
        self.done = self.buf_start + stop
        order = np.argsort(samples, kind="stable")
        self.counters["spikes"] += len(samples)
        return samples[order] + (self.buf_start + lo), units[order]
