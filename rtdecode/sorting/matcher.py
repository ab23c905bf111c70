"""rtdecode's own vectorised template matcher (one pass, sparse, no Python loop over spikes).

For a preprocessed chunk ``x`` (samples x channels, uV):

1. detection: ``z = min_c x[:, c] / noise[c]``; events are samples where ``z < -threshold`` and ``z``
   is the minimum within +-``refractory`` samples (one event per local trough across the probe);
2. candidates: the units whose main channel lies within ``radius_um`` of the event's channel
   (precomputed per channel, padded);
3. fit: for every event, candidate and alignment shift (+-``max_shift`` samples), the least-squares
   gain of subtracting the template on its sparse channels, ``2 <x, w> - |w|^2``, computed with one
   ``einsum`` over (events, candidates, shifts, time, channels); the best positive fit with a
   plausible amplitude ``<x, w> / |w|^2`` wins.

Everything per chunk is a handful of array operations whose size grows with the number of
events, candidates and sparse channels -- not with units x channels.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import minimum_filter1d


class TemplateMatcher:
    def __init__(
        self,
        templates: np.ndarray,
        nbefore: int,
        sparsity: np.ndarray,
        noise_levels: np.ndarray,
        channel_positions: np.ndarray,
        threshold: float = 5.0,
        radius_um: float = 60.0,
        max_shift: int = 2,
        refractory: int = 10,
        amplitude_range: tuple[float, float] = (0.5, 2.0),
    ) -> None:
        t = np.asarray(templates, dtype=np.float32)
        self.n_units, self.length, self.n_channels = t.shape
        self.nbefore = int(nbefore)
        self.threshold = float(threshold)
        self.max_shift = int(max_shift)
        self.refractory = int(refractory)
        self.amplitude_range = amplitude_range
        self.noise = np.maximum(np.asarray(noise_levels, dtype=np.float32), 1e-3)
        mask = np.asarray(sparsity, dtype=bool)
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
        self.norm2 = (self.unit_weights**2).sum(axis=(1, 2))
        pos = np.asarray(channel_positions, dtype=np.float64)
        dist = np.linalg.norm(pos[:, None, :] - pos[main][None, :, :], axis=2)  # channels x units
        near = dist <= radius_um
        m = max(1, int(near.sum(axis=1).max()))
        self.candidates = np.full((self.n_channels, m), -1, dtype=np.int64)
        for c in range(self.n_channels):  # set-up, once
            units = np.flatnonzero(near[c])
            self.candidates[c, : len(units)] = units
        self.shifts = np.arange(-self.max_shift, self.max_shift + 1)
        self.span = np.arange(self.length)

    @property
    def margin_left(self) -> int:
        return self.nbefore + self.max_shift + self.refractory

    @property
    def margin_right(self) -> int:
        return self.length - self.nbefore + self.max_shift + self.refractory

    def detect(self, x: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Event samples in ``[start, stop)`` of buffer ``x`` and their peak channels."""
        z = x / self.noise
        zmin = z.min(axis=1)
        local = minimum_filter1d(zmin, size=2 * self.refractory + 1, mode="nearest")
        t = np.flatnonzero((zmin < -self.threshold) & (zmin <= local))
        t = t[(t >= start) & (t < stop)]
        if t.size > 1:  # flat troughs: keep the first sample of equal minima
            t = t[np.concatenate([[True], np.diff(t) > self.refractory])]
        return t, z[t].argmin(axis=1)

    def match(self, x: np.ndarray, t: np.ndarray, chan: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Best (sample, unit, amplitude) per event; events without an acceptable fit are dropped."""
        if t.size == 0:
            return t, np.empty(0, np.int64), np.empty(0, np.float32)
        cand = self.candidates[chan]  # (E, M)
        valid = cand >= 0
        cu = np.where(valid, cand, 0)
        chans = self.unit_channels[cu]  # (E, M, K)
        times = t[:, None, None] + self.shifts[None, :, None] - self.nbefore + self.span[None, None, :]  # (E, S, L)
        snip = x[times[:, None, :, :, None], chans[:, :, None, None, :]]  # (E, M, S, L, K)
        dot = np.einsum("emslk,emlk->ems", snip, self.unit_weights[cu], optimize=True)
        n2 = self.norm2[cu][:, :, None]
        score = np.where(valid[:, :, None], 2 * dot - n2, -np.inf)
        amp = dot / np.maximum(n2, 1e-9)
        lo, hi = self.amplitude_range
        score = np.where((amp >= lo) & (amp <= hi), score, -np.inf)
        flat = score.reshape(len(t), -1).argmax(axis=1)
        m_i, s_i = np.unravel_index(flat, score.shape[1:])
        e = np.arange(len(t))
        ok = np.isfinite(score[e, m_i, s_i]) & (score[e, m_i, s_i] > 0)
        units = cand[e, m_i][ok]
        samples = (t + self.shifts[s_i])[ok]
        return samples, units, amp[e, m_i, s_i][ok].astype(np.float32)

    def find(self, x: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Spikes (buffer sample, unit index) with samples in ``[start, stop)`` of buffer ``x``."""
        t, chan = self.detect(x, start, stop)
        samples, units, _ = self.match(x, t, chan)
        return samples, units
