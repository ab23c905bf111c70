"""Probe motion along the shank, estimated causally from the stream while it is sorted.

Each detected peak (the matcher's own detections, no second pass over the data) gets a depth: the
centre of its negative amplitudes over the channels around its peak channel. The depths of the
last ``memory_s`` seconds form an activity profile along the shank (a histogram, smoothed), which
is compared with the profile the bundle's templates predict at the calibration position -- each
unit's template depth by the same rule, weighted by its firing rate where one is given (the daemon
counts each unit once). The shift that
best aligns the two (normalised cross-correlation over +-``max_um``, refined to a fraction of a
bin) is the displacement: how far the units now sit up the shank (+) or towards the tip (-) from
where they were calibrated. It is re-estimated every ``window_s`` of stream, as DREDge and
Kilosort 4 do offline in time bins, but only from the past.

The cost per block is a gather of a few channels per detected peak and a ``bincount``; the
comparison runs once per window (a few hundred bins x lags). Nothing here touches the matcher:
the estimate is reported (status, decision records); moving the templates with it is the next step.
"""

from __future__ import annotations

import numpy as np


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
        self.reference = self._profile(np.asarray(reference_depths, float), np.asarray(reference_weights, float))
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
            self.pending[:] = 0
            if self.peaks_in_profile >= self.min_peaks:
                self._estimate(self.window_end)
            self.window_end += self.window

    def _estimate(self, at_sample: int) -> None:
        h = self.live - self.live.mean()
        r = self.reference - self.reference.mean()
        n, L = self.n_bins, self.max_lag
        full = np.correlate(h, r, mode="full")  # index l + n - 1: sum_b h[b + l] r[b]
        lags = np.arange(-L, L + 1)
        score = full[lags + n - 1]
        norm = np.sqrt((h * h).sum() * (r * r).sum())
        k = int(np.argmax(score))
        shift = float(lags[k])
        if 0 < k < len(score) - 1:  # a parabola through the peak and its neighbours
            a, b, c = score[k - 1], score[k], score[k + 1]
            den = a - 2 * b + c
            if den < 0:
                shift += 0.5 * (a - c) / den
        self.displacement_um = shift * self.bin_um
        self.confidence = float(score[k] / norm) if norm > 0 else None
        self.estimated_at = int(at_sample)
        self.estimates += 1

    def status(self) -> dict:
        return {
            "displacement_um": self.displacement_um,
            "confidence": self.confidence,
            "estimated_at_sample": self.estimated_at,
            "estimates": self.estimates,
            "peaks_in_profile": round(self.peaks_in_profile, 1),
            "reference": "the bundle's templates at calibration",
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
