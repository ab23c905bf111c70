"""rtdecode's own template matcher (one pass, sparse, no Python loop over spikes or samples).

For a preprocessed chunk ``x`` (samples x channels, uV):

1. detection, locally exclusive (as SpikeInterface's ``locally_exclusive``): an event is a sample
   and channel where the detection signal ``z < -threshold`` and which is the most negative within
   +-``refractory`` samples on every channel within ``exclusion_um`` -- so units far apart on the
   probe that fire at the same moment are each detected. With ``detection="channel"``,
   ``z = x / noise`` channel by channel. With ``detection="pooled"`` (the default), ``z`` is a
   matched filter for spikes in general: each channel's whitened signal smoothed in time by a
   triangle as wide as the templates' troughs, then summed over nearby channels with Gaussian
   weights (``pool_sigma_um``), both kernels of unit energy so ``z`` keeps unit noise variance
   (white, independent channel noise). A spike spread over several channels and samples adds up
   where the noise does not: units whose peak is 3-5 noise SDs on their best channel, which a
   per-channel threshold never sees, are found (at 384 channels, mean accuracy 0.73 -> 0.855;
   README, "Probe motion", accuracy by SNR);
2. candidates: the units whose main channel lies within ``radius_um`` of the event's channel
   (precomputed per channel, padded);
3. fit: for every event, candidate and alignment shift (+-``max_shift`` samples), the least-squares
   gain of subtracting the template on its sparse channels, ``2 <x, w> - |w|^2``; the best positive
   gain with a plausible amplitude ``<x, w> / |w|^2`` wins;
4. one spike per unit per ``refractory`` samples: when a large spike gives events on channels
   further apart than ``exclusion_um`` and both match the same unit, the better fit is kept.

Steps 1 and 3 are numba kernels that read the chunk in place (cost grows with samples x channels
for 1 -- x (kernel taps + channel band) when pooled -- with events x candidates x sparse channels for
3 -- never with units x channels).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rtdecode.parameters import default
from rtdecode.sorting.template_motion import move_templates


@njit(cache=True, nogil=True)
def _local_peaks(x, inv_noise, threshold, neighbours, refractory, start, stop):  # pragma: no cover - compiled
    """(samples, channels) in [start, stop) where x / noise < -threshold and is the minimum of its
    space-time neighbourhood (ties: the earlier sample, then the lower channel wins)."""
    n, C = x.shape
    ts = []
    cs = []
    for t in range(max(start, 0), min(stop, n)):
        t0 = max(t - refractory, 0)
        t1 = min(t + refractory + 1, n)
        for c in range(C):
            v = x[t, c] * inv_noise[c]
            if v >= -threshold:
                continue
            # the samples either side first (the same rule as below): on a smooth signal, as the pooled
            # one, most samples under the threshold are on a spike's flank and fail here
            if refractory > 0 and (
                (t > 0 and x[t - 1, c] * inv_noise[c] <= v) or (t + 1 < n and x[t + 1, c] * inv_noise[c] < v)
            ):
                continue
            peak = True
            for j in range(neighbours.shape[1]):
                c2 = neighbours[c, j]
                if c2 < 0:
                    break
                for t2 in range(t0, t1):
                    w = x[t2, c2] * inv_noise[c2]
                    if w < v or (w == v and (t2 < t or (t2 == t and c2 < c))):
                        peak = False
                        break
                if not peak:
                    break
            if peak:
                ts.append(t)
                cs.append(c)
    return ts, cs


@njit(cache=True, nogil=True, fastmath=True)
def _pooled(x, inv_noise, taps, band, start, stop, out, row, acc):  # pragma: no cover - compiled
    """Rows [start, stop) of ``out`` = the detection signal of buffer ``x``: each channel whitened and
    smoothed by ``taps`` (centred), then ``out[t, c] = sum_k band[k, c] * smoothed[t, c + k - B]``.
    ``row`` (channels + 2B, zero-padded ends) and ``acc`` (channels) are scratch."""
    n, C = x.shape
    H = taps.shape[0]
    hc = H // 2
    KB = band.shape[0]
    B = KB // 2
    for t in range(start, stop):
        for c in range(C):
            acc[c] = 0.0
        for j in range(H):
            tt = t + j - hc
            if tt >= 0 and tt < n:
                hj = taps[j]
                xr = x[tt]
                for c in range(C):
                    acc[c] += hj * xr[c]
        for c in range(C):
            row[B + c] = acc[c] * inv_noise[c]
            acc[c] = 0.0
        for k in range(KB):
            bk = band[k]
            for c in range(C):
                acc[c] += bk[c] * row[c + k]
        o = out[t]
        for c in range(C):
            o[c] = acc[c]


def trough_taps(templates: np.ndarray) -> np.ndarray:
    """A unit-energy triangle as wide as the templates' troughs: the median, over units, of how many
    samples the main channel's waveform spends below half its trough; half-width ``ceil(w / 2)``."""
    t = np.asarray(templates, dtype=np.float32)
    main = np.abs(t).max(axis=1).argmax(axis=1)
    wave = t[np.arange(len(t)), :, main]
    depth = np.maximum(-wave.min(axis=1, keepdims=True), 1e-9)
    width = int(np.median((wave < -0.5 * depth).sum(axis=1)))
    half = max(1, -(-width // 2))
    taps = 1.0 - np.abs(np.arange(-half, half + 1)) / (half + 1)
    return (taps / np.sqrt((taps**2).sum())).astype(np.float32)


def pooling_band(channel_positions: np.ndarray, sigma_um: float) -> np.ndarray:
    """(2B + 1, channels) Gaussian weights of the channels within 2.5 ``sigma_um`` of each channel,
    by channel offset ``k - B`` (B: the largest offset between such neighbours; a few on a probe whose
    channels go by depth), each channel's weights of unit energy."""
    pos = np.asarray(channel_positions, dtype=np.float64)
    n = len(pos)
    d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=2)
    close = d <= 2.5 * sigma_um
    w = np.exp(-0.5 * (d / sigma_um) ** 2) * close
    w /= np.sqrt((w**2).sum(axis=1, keepdims=True))
    rows, cols = np.nonzero(close)
    b = int(np.abs(cols - rows).max())
    band = np.zeros((2 * b + 1, n), dtype=np.float32)
    band[cols - rows + b, rows] = w[rows, cols]
    return band


@njit(cache=True, nogil=True)
def _fit_candidates(
    x, t, chan, candidates, unit_channels, unit_weights, norm2, shifts, nbefore, lo, hi
):  # pragma: no cover
    """For each event: the candidate unit and shift with the largest gain 2<x,w> - |w|^2 whose
    amplitude <x,w>/|w|^2 lies in [lo, hi]. Returns (unit or -1, shift index, amplitude, gain)."""
    n_events = t.shape[0]
    M = candidates.shape[1]
    L = unit_weights.shape[1]
    K = unit_weights.shape[2]
    best_unit = np.full(n_events, -1, np.int64)
    best_shift = np.zeros(n_events, np.int64)
    best_amp = np.zeros(n_events, np.float32)
    best_score = np.zeros(n_events, np.float64)
    for e in range(n_events):
        best = 0.0  # only fits that reduce the residual (gain > 0) count
        for m in range(M):
            u = candidates[chan[e], m]
            if u < 0:
                continue
            n2 = norm2[u]
            for si in range(shifts.shape[0]):
                t0 = t[e] + shifts[si] - nbefore
                dot = 0.0
                for i in range(L):
                    for k in range(K):
                        dot += x[t0 + i, unit_channels[u, k]] * unit_weights[u, i, k]
                amp = dot / max(n2, 1e-9)
                score = 2.0 * dot - n2
                if amp >= lo and amp <= hi and score > best:
                    best = score
                    best_unit[e] = u
                    best_shift[e] = si
                    best_amp[e] = amp
                    best_score[e] = score
    return best_unit, best_shift, best_amp, best_score


class TemplateMatcher:
    def __init__(
        self,
        templates: np.ndarray,
        nbefore: int,
        sparsity: np.ndarray,
        noise_levels: np.ndarray,
        channel_positions: np.ndarray,
        threshold: float = default("sorting.detect_threshold"),
        radius_um: float = 60.0,
        exclusion_um: float = 50.0,
        max_shift: int = 2,
        refractory: int = 10,
        amplitude_range: tuple[float, float] = (0.5, 2.0),
        detection: str = default("sorting.detection"),
        pool_sigma_um: float = 20.0,
    ) -> None:
        if detection not in ("pooled", "channel"):
            raise ValueError(f"detection must be 'pooled' or 'channel', got {detection!r}")
        t = np.asarray(templates, dtype=np.float32)
        # as given (the calibration position): what :meth:`moved` moves, however often it is called
        self.calibration = (t, np.asarray(sparsity, dtype=bool), np.asarray(channel_positions, dtype=np.float64))
        self.options = {
            "threshold": threshold,
            "radius_um": radius_um,
            "exclusion_um": exclusion_um,
            "max_shift": max_shift,
            "refractory": refractory,
            "amplitude_range": amplitude_range,
            "detection": detection,
            "pool_sigma_um": pool_sigma_um,
        }
        self.detection = detection
        self.displacement_um = 0.0  # how far from the calibration position its templates are moved
        self.n_units, self.length, self.n_channels = t.shape
        self.nbefore = int(nbefore)
        self.threshold = float(threshold)
        self.max_shift = int(max_shift)
        self.refractory = int(refractory)
        self.amplitude_range = amplitude_range
        self.noise = np.maximum(np.asarray(noise_levels, dtype=np.float32), 1e-3)
        self.inv_noise = (1.0 / self.noise).astype(np.float32)
        mask = np.asarray(sparsity, dtype=bool).copy()
        main = np.abs(t).max(axis=1).argmax(axis=1)
        mask[np.arange(self.n_units), main] = True
        k = int(mask.sum(axis=1).max())
        self.unit_channels = np.zeros((self.n_units, k), dtype=np.int64)
        self.unit_weights = np.zeros((self.n_units, self.length, k), dtype=np.float32)
        for u in range(self.n_units):  # set-up, once
            chans = np.flatnonzero(mask[u])
            self.unit_channels[u, : len(chans)] = chans
            self.unit_channels[u, len(chans) :] = main[u]
            self.unit_weights[u, :, : len(chans)] = t[u][:, chans]
        self.norm2 = (self.unit_weights.astype(np.float64) ** 2).sum(axis=(1, 2))
        pos = np.asarray(channel_positions, dtype=np.float64)
        dist = np.linalg.norm(pos[:, None, :] - pos[main][None, :, :], axis=2)  # channels x units
        near = dist <= radius_um
        m = max(1, int(near.sum(axis=1).max()))
        self.candidates = np.full((self.n_channels, m), -1, dtype=np.int64)
        for c in range(self.n_channels):  # set-up, once
            units = np.flatnonzero(near[c])
            self.candidates[c, : len(units)] = units
        self.shifts = np.arange(-self.max_shift, self.max_shift + 1, dtype=np.int64)
        chan_dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=2)
        close = chan_dist <= exclusion_um
        self.neighbours = np.full((self.n_channels, int(close.sum(axis=1).max())), -1, dtype=np.int64)
        for c in range(self.n_channels):  # set-up, once
            chans = np.flatnonzero(close[c])
            self.neighbours[c, : len(chans)] = chans
        if detection == "pooled":
            self.taps = trough_taps(t)
            self.band = pooling_band(pos, pool_sigma_um)
            self._row = np.zeros(self.n_channels + self.band.shape[0] - 1, dtype=np.float32)
            self._acc = np.zeros(self.n_channels, dtype=np.float32)
            self._z = np.zeros((4096, self.n_channels), dtype=np.float32)  # grows to the largest chunk, once
            self._unit_noise = np.ones(self.n_channels, dtype=np.float32)

    def moved(self, displacement_um: float) -> TemplateMatcher:
        """A matcher like this one whose templates are moved ``displacement_um`` up the shank from
        the calibration position (:func:`~rtdecode.sorting.template_motion.move_templates`); the
        margins, detection (the pooled filter included) and noise are the same. Set-up work (tens to
        hundreds of ms at 384 channels): the sorter builds it off the hot path."""
        templates, sparsity, positions = self.calibration
        moved, mask = move_templates(templates, sparsity, positions, displacement_um)
        m = TemplateMatcher(moved, self.nbefore, mask, self.noise, positions, **self.options)
        if self.detection == "pooled":  # detection stays the calibration's, wherever the templates go
            m.taps = self.taps
        m.calibration = self.calibration
        m.displacement_um = float(displacement_um)
        return m

    @property
    def margin_left(self) -> int:
        return self.nbefore + self.max_shift + self.refractory

    @property
    def margin_right(self) -> int:
        return self.length - self.nbefore + self.max_shift + self.refractory

    def warmup(self) -> None:
        """Compile (or load from numba's cache) both kernels before live data arrives."""
        n = self.length + 2 * self.max_shift + 2
        x = np.zeros((n, self.n_channels), dtype=np.float32)
        self.detect(x, 0, n)
        self.match(x, np.array([self.nbefore + self.max_shift], dtype=np.int64), np.zeros(1, dtype=np.int64))

    def detect(self, x: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Event samples in ``[start, stop)`` of buffer ``x`` and their channels, in time order."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        z, inv_noise = x, self.inv_noise
        if self.detection == "pooled":
            if len(self._z) < len(x):
                self._z = np.zeros((len(x), self.n_channels), dtype=np.float32)
            z, inv_noise = self._z[: len(x)], self._unit_noise
            # the peak test reads +-refractory rows around [start, stop): only those are computed
            lo, hi = max(0, int(start) - self.refractory), min(len(x), int(stop) + self.refractory)
            _pooled(x, self.inv_noise, self.taps, self.band, lo, hi, z, self._row, self._acc)
        ts, cs = _local_peaks(
            z, inv_noise, np.float32(self.threshold), self.neighbours, self.refractory, int(start), int(stop)
        )
        return np.asarray(ts, dtype=np.int64), np.asarray(cs, dtype=np.int64)

    def match(self, x: np.ndarray, t: np.ndarray, chan: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Best (sample, unit, amplitude) per event; events without an acceptable fit are dropped."""
        if t.size == 0:
            return t, np.empty(0, np.int64), np.empty(0, np.float32)
        lo, hi = self.amplitude_range
        unit, shift, amp, score = _fit_candidates(
            np.ascontiguousarray(x, dtype=np.float32),
            np.asarray(t, dtype=np.int64),
            np.asarray(chan, dtype=np.int64),
            self.candidates,
            self.unit_channels,
            self.unit_weights,
            self.norm2,
            self.shifts,
            self.nbefore,
            float(lo),
            float(hi),
        )
        ok = unit >= 0
        samples, unit, amp, score = (t + self.shifts[shift])[ok], unit[ok], amp[ok], score[ok]
        keep = self._one_per_unit(samples, unit, score)
        return samples[keep], unit[keep], amp[keep]

    def _one_per_unit(self, samples: np.ndarray, unit: np.ndarray, score: np.ndarray) -> np.ndarray:
        """Mask keeping, of spikes of one unit within ``refractory`` samples, the best fit."""
        keep = np.ones(len(samples), dtype=bool)
        if len(samples) < 2:
            return keep
        order = np.lexsort((samples, unit))
        u, t, sc = unit[order], samples[order], score[order]
        close = (u[1:] == u[:-1]) & (t[1:] - t[:-1] <= self.refractory)
        # drop the worse of each close pair (chains of three or more are rare; each pair is judged)
        worse_is_next = sc[1:] <= sc[:-1]
        drop = np.zeros(len(order), dtype=bool)
        drop[1:][close & worse_is_next] = True
        drop[:-1][close & ~worse_is_next] = True
        keep[order[drop]] = False
        return keep

    def find(self, x: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Spikes (buffer sample, unit index) with samples in ``[start, stop)`` of buffer ``x``."""
        t, chan = self.detect(x, start, stop)
        samples, units, _ = self.match(x, t, chan)
        return samples, units
