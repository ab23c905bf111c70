"""Probe motion along the shank, estimated causally from the stream while it is sorted.

Each detected peak (the matcher's own detections, no second pass over the data) gets a depth: the
centre of its negative amplitudes over the channels around its peak channel. The depths of the
last ``memory_s`` seconds form an activity profile along the shank (a histogram, smoothed), which
is compared with a reference profile: the calibration recording's own peaks, found by the same
detection on the same rule (recorded by the builder while it runs the bundle's online pipeline over
the calibration, registered over the calibration's own motion, in ``templates.npz``), or, for a
bundle without one, the profile the templates predict (each unit's template depth by the same rule,
every unit counted once). The shift that best aligns the two (normalised cross-correlation over
+-``max_um``, refined to a fraction of a bin) is the displacement: how far the units now sit up the
shank (+) or towards the tip (-) from where they were calibrated. It is re-estimated every
``window_s`` of stream, as DREDge and Kilosort 4 do offline in time bins, but only from the past.

The ends of the shank are left out of the comparison: a peak within half a neighbourhood's reach of
the first or last row has part of its footprint off the probe, so its depth piles up at the end whatever
the motion (a unit sliding past the tip stays at the tip), and those bins would hold the estimate
near zero. A best shift at the edge of the +-``max_um`` range is not a maximum: that window's estimate
is left out (``unresolved``) and the last one stands.

The cost per block is a gather of a few channels per detected peak and a ``bincount``; the
comparison runs once per window (a few hundred bins x lags). The estimate is reported (status,
decision records) and moves the matcher's templates (``moving_templates``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import convolve1d


@dataclass(frozen=True)
class DepthProfile:
    """Where a recording's detected peaks lie along the shank: peaks per bin of depth, registered
    over the recording's own motion (its zero is the recording's average position)."""

    centres_um: np.ndarray  # (bins,) bin centres along the shank
    peaks: np.ndarray  # (bins,) detected peaks per bin
    shifts_um: np.ndarray  # (chunks,) the recording's own motion found while registering it


class MotionTracker:
    def __init__(
        self,
        channel_positions: np.ndarray,
        neighbours: np.ndarray,
        reference_depths: np.ndarray,
        reference_weights: np.ndarray,
        sample_rate: float,
        bin_um: float = 2.0,
        sigma_um: float = 6.0,
        max_um: float = 60.0,
        window_s: float = 1.0,
        memory_s: float = 3.0,
        min_peaks: int = 200,
        edge_um: float | None = None,
    ) -> None:
        self.y = np.asarray(channel_positions, dtype=np.float64)[:, 1]
        self.neighbours = np.asarray(neighbours, dtype=np.int64)  # (channels, m), -1 padded
        self.bin_um = float(bin_um)
        self.max_lag = int(round(max_um / bin_um))
        lo = self.y.min() - max_um - 4 * sigma_um
        hi = self.y.max() + max_um + 4 * sigma_um
        self.edges_lo = lo
        self.n_bins = int(np.ceil((hi - lo) / bin_um))
        half = int(np.ceil(3 * sigma_um / bin_um))
        k = np.arange(-half, half + 1) * bin_um
        self.kernel = np.exp(-0.5 * (k / sigma_um) ** 2)
        if edge_um is None:  # half of a peak's neighbourhood's extent along the shank (20 um on
            # Neuropixels 1.0): the whole extent (40 um) left too little of a 32-channel shank and the
            # estimate locked onto an alias 50 um off on the demo's animal (README, Probe motion)
            nb = np.where(self.neighbours >= 0, self.neighbours, np.arange(len(self.y))[:, None])
            edge_um = 0.5 * float(np.abs(self.y[nb] - self.y[:, None]).max()) if len(self.y) else 0.0
        centres = lo + (np.arange(self.n_bins) + 0.5) * bin_um
        # the bins compared: a peak within edge_um of the shank's ends has part of its footprint off
        # the probe, so its depth piles up at the end whatever the motion (a unit sliding off the
        # tip stays at the tip); those bins would hold the estimate at zero
        self.compared = ((centres > self.y.min() + edge_um) & (centres < self.y.max() - edge_um)).astype(np.float64)
        self.centres_um = centres
        self.reference = self._profile(np.asarray(reference_depths, float), np.asarray(reference_weights, float))
        self.reference_source = "the bundle's templates at calibration"
        self.window = max(1, int(round(window_s * sample_rate)))
        self.decay = float(np.exp(-window_s / memory_s))
        self.min_peaks = int(min_peaks)
        self.sample_rate = float(sample_rate)
        self.displacement_um: float | None = None  # None until enough peaks were seen
        self.estimated_at: int | None = None  # stream sample of the latest estimate
        self.estimates = 0
        self.confidence: float | None = None  # normalised correlation of the profiles at the estimate
        self.live = np.zeros(self.n_bins)  # the smoothed profile of recent peaks, decaying
        self.peaks_in_profile = 0.0
        self.pending = np.zeros(self.n_bins, dtype=np.int64)  # raw counts of the current window
        self.window_end: int | None = None
        self.unresolved = 0  # windows whose best shift lay at the edge of the range (not estimated)
        self.recorded: list[np.ndarray] | None = None  # each window's raw counts, once record() is called

    def record(self) -> None:
        """Keep every window's raw peak counts from now on (the builder, over the calibration; not the
        daemon: the list grows with the stream) for :meth:`calibration_profile`."""
        self.recorded = []

    # -- depths --------------------------------------------------------------------------------------
    def peak_depths(self, x: np.ndarray, t: np.ndarray, chan: np.ndarray) -> np.ndarray:
        """Depth (um) of each detected peak: its negative amplitudes' centre over the channels
        around its peak channel, at its sample."""
        if len(t) == 0:
            return np.empty(0)
        nb = self.neighbours[chan]  # (events, m)
        valid = nb >= 0
        nbc = np.where(valid, nb, 0)
        a = np.where(valid, -x[t[:, None], nbc], 0.0).clip(min=0.0)
        total = a.sum(axis=1)
        total[total == 0] = 1.0
        return (a * self.y[nbc]).sum(axis=1) / total

    def _profile(self, depths: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        idx = np.clip(((depths - self.edges_lo) / self.bin_um).astype(np.int64), 0, self.n_bins - 1)
        h = np.bincount(idx, weights=weights, minlength=self.n_bins).astype(np.float64)
        return np.convolve(h, self.kernel, mode="same")

    # -- the stream ----------------------------------------------------------------------------------
    def restart_clock(self) -> None:
        """The stream was cut (a gap, a restart: sample numbers may start again): the window starts
        afresh with the next block. The profile and the estimate stand -- the probe has not moved
        because the stream did."""
        self.pending[:] = 0
        self.window_end = None

    def add(self, x: np.ndarray, t: np.ndarray, chan: np.ndarray, first_sample: int, until: int) -> None:
        """Peaks ``(t, chan)`` detected in buffer ``x`` (whose row 0 is stream sample
        ``first_sample``); the stream has been searched up to sample ``until``."""
        if self.window_end is None:
            self.window_end = first_sample + self.window
        if len(t):
            d = self.peak_depths(x, t, chan)
            idx = np.clip(((d - self.edges_lo) / self.bin_um).astype(np.int64), 0, self.n_bins - 1)
            self.pending += np.bincount(idx, minlength=self.n_bins)
        while until >= self.window_end:  # a window is complete (peaks straddling its end go in it)
            self.live = self.live * self.decay + np.convolve(self.pending, self.kernel, mode="same")
            self.peaks_in_profile = self.peaks_in_profile * self.decay + float(self.pending.sum())
            if self.recorded is not None:
                self.recorded.append(self.pending.copy())
            self.pending[:] = 0
            if self.peaks_in_profile >= self.min_peaks:
                self._estimate(self.window_end)
            self.window_end += self.window

    @property
    def reference(self) -> np.ndarray:
        return self._reference

    @reference.setter
    def reference(self, profile: np.ndarray) -> None:
        self._reference = profile
        self._reference_terms = self._moved_variance(profile)  # once per reference, not per window

    def _lags(self) -> np.ndarray:
        """Where lags -max_lag..max_lag sit in ``np.correlate(a, v, "full")``: index l + n - 1 holds
        sum_b a[b] v[b - l]."""
        return np.arange(-self.max_lag, self.max_lag + 1) + self.n_bins - 1

    def _moved_variance(self, reference: np.ndarray) -> np.ndarray:
        """Lag by lag, the variance (times the bin count) over the compared bins of ``reference``
        moved up by l bins."""
        m, at = self.compared, self._lags()
        mr = np.correlate(m, reference, mode="full")[at]
        mr2 = np.correlate(m, reference * reference, mode="full")[at]
        return np.maximum(mr2 - mr * mr / m.sum(), 0.0)

    def _scores(self, live: np.ndarray, reference: np.ndarray, r_var: np.ndarray | None = None) -> np.ndarray:
        """Normalised cross-correlation, lag by lag (-max_lag..max_lag bins), over the compared bins b
        of ``live``: live[b] against ``reference`` moved up by l bins, reference[b - l]. ``live`` may be
        (rows, bins): one score row each. ``r_var``: :meth:`_moved_variance` of ``reference``, when
        known."""
        m, at = self.compared, self._lags()
        live = np.atleast_2d(live)
        h = (live - (live * m).sum(axis=1, keepdims=True) / m.sum()) * m
        hr = np.stack([np.correlate(row, reference, mode="full")[at] for row in h])
        r_var = self._moved_variance(reference) if r_var is None else r_var
        norm = np.sqrt((h * h).sum(axis=1, keepdims=True) * r_var)
        return np.where(norm > 0, hr / np.where(norm > 0, norm, 1.0), -1.0)

    def _estimate(self, at_sample: int) -> None:
        score = self._scores(self.live, self.reference, self._reference_terms)[0]
        k = int(np.argmax(score))
        if k == 0 or k == len(score) - 1:  # no maximum inside the range: the last estimate stands
            self.unresolved += 1
            return
        shift = float(k - self.max_lag)
        a, b, c = score[k - 1], score[k], score[k + 1]  # a parabola through the peak and its neighbours
        den = a - 2 * b + c
        if den < 0:
            shift += 0.5 * (a - c) / den
        self.displacement_um = shift * self.bin_um
        self.confidence = float(score[k])
        self.estimated_at = int(at_sample)
        self.estimates += 1

    def calibration_profile(self, chunk_s: float = 10.0, iterations: int = 3) -> DepthProfile | None:
        """The recorded windows (:meth:`record`) as one reference profile, registered over the
        recording's own motion the way Kilosort 4 registers its batches: windows summed into chunks
        of ``chunk_s``, each chunk's shift against the sum of all found by the same comparison, the
        chunks moved back by it and summed again, ``iterations`` times; the result is put at the
        chunks' average position. None when nothing was recorded."""
        if not self.recorded:
            return None
        counts = np.stack(self.recorded).astype(np.float64)
        per = max(1, int(round(chunk_s / (self.window / self.sample_rate))))
        n_chunks = -(-len(counts) // per)
        chunks = np.zeros((n_chunks, self.n_bins))
        np.add.at(chunks, np.arange(len(counts)) // per, counts)
        smooth = convolve1d(chunks, self.kernel, axis=1, mode="constant")
        shifts = np.zeros(n_chunks, dtype=np.int64)
        for _ in range(iterations):
            target = convolve1d(_shifted(chunks, -shifts).sum(axis=0), self.kernel, mode="constant")
            score = self._scores(smooth, target)
            shifts = score.argmax(axis=1) - self.max_lag
        shifts -= int(round(float(np.average(shifts, weights=chunks.sum(axis=1) + 1e-9))))
        peaks = _shifted(chunks, -shifts).sum(axis=0)
        return DepthProfile(self.centres_um.copy(), peaks, shifts * self.bin_um)

    def status(self) -> dict:
        return {
            "displacement_um": self.displacement_um,
            "confidence": self.confidence,
            "estimated_at_sample": self.estimated_at,
            "estimates": self.estimates,
            "unresolved_windows": self.unresolved,
            "peaks_in_profile": round(self.peaks_in_profile, 1),
            "reference": self.reference_source,
        }

    @classmethod
    def for_templates(cls, templates: np.ndarray, channel_positions, neighbours, rates, sample_rate, **kw):
        """A tracker whose reference is the profile ``templates`` predict: each unit's depth by the
        same rule as a peak's (at its template's peak sample; set-up, once per unit), weighted by
        ``rates`` (Hz, the calibration's; None: equal)."""
        t = np.asarray(templates, dtype=np.float64)
        main = np.abs(t).max(axis=1).argmax(axis=1)
        peak = np.abs(t[np.arange(len(t)), :, main]).argmax(axis=1)
        tracker = cls(channel_positions, neighbours, np.zeros(0), np.zeros(0), sample_rate, **kw)
        one = np.zeros(1, dtype=np.int64)
        depths = np.array([tracker.peak_depths(t[u], one + peak[u], one + main[u])[0] for u in range(len(t))])
        w = np.ones(len(t)) if rates is None else np.maximum(np.asarray(rates, dtype=np.float64), 0.1)
        tracker.reference = tracker._profile(depths, w)
        tracker.unit_depths = depths
        return tracker

    @classmethod
    def for_calibration(cls, profile: DepthProfile, channel_positions, neighbours, sample_rate, **kw):
        """A tracker whose reference is ``profile``: the calibration recording's own peaks
        (:meth:`calibration_profile`), put on this tracker's bins."""
        tracker = cls(channel_positions, neighbours, np.zeros(0), np.zeros(0), sample_rate, **kw)
        centres, peaks = np.asarray(profile.centres_um, float), np.asarray(profile.peaks, float)
        if len(centres) < 2:
            raise ValueError(f"a depth profile needs at least 2 bins, got {len(centres)}")
        density = np.interp(tracker.centres_um, centres, peaks / (centres[1] - centres[0]), left=0.0, right=0.0)
        tracker.reference = np.convolve(density, tracker.kernel, mode="same")
        tracker.reference_source = "the calibration recording's own peaks"
        return tracker


def _shifted(rows: np.ndarray, by: np.ndarray) -> np.ndarray:
    """Each row moved by its own whole number of bins (up: +), zeros coming in."""
    n = rows.shape[1]
    src = np.arange(n)[None, :] - by[:, None]
    ok = (src >= 0) & (src < n)
    return np.where(ok, np.take_along_axis(rows, np.clip(src, 0, n - 1), axis=1), 0.0)
