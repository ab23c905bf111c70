"""Trial responses ``R`` from spikes (DESIGN section 2), shared by the builder and the daemon.

Conventions (pynapple-style, documented because off-by-one here silently changes results):

- time is integer sample indices at the recording's sample rate; spike times in seconds are
  converted with :func:`seconds_to_samples` (round to nearest sample);
- a window ``[start, end)`` relative to onset is half-open: a spike exactly at ``onset + start``
  counts, one exactly at ``onset + end`` does not;
- ``r_it`` = count in the response window / window length (Hz); ``b_it`` the same in the baseline
  window; ``R_it = (r_it - mean_t b_it) / std_t b_it`` where mean and std are fit **only on the
  trials given as the fit set** (leakage rule), and std is floored at ``min_std_hz``.

Everything is vectorised: all units' spikes are merged into one sorted key array
(``unit * stride + sample``), so counting every (trial, unit) pair is two ``searchsorted`` calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def seconds_to_samples(times_s: np.ndarray, sample_rate: float) -> np.ndarray:
    """Spike/onset times in seconds -> nearest integer sample index (int64)."""
    return np.rint(np.asarray(times_s, dtype=np.float64) * sample_rate).astype(np.int64)


def window_samples(window_ms: tuple[float, float], sample_rate: float) -> tuple[int, int]:
    """A [start, end) window in ms -> integer sample offsets (rounded)."""
    start, end = (int(round(w * sample_rate / 1000.0)) for w in window_ms)
    if end <= start:
        raise ValueError(f"window must have end > start, got {window_ms} ms -> [{start}, {end}) samples")
    return start, end


@dataclass(frozen=True)
class SpikeIndex:
    """All units' spike samples merged into one sorted key array for vectorised counting."""

    keys: np.ndarray  # int64, sorted: unit_index * stride + sample
    stride: int
    n_units: int

    @classmethod
    def from_trains(cls, trains: list[np.ndarray]) -> SpikeIndex:
        """From one int sample array per unit (any order within a unit)."""
        n_units = len(trains)
        lengths = np.array([len(t) for t in trains], dtype=np.int64)
        flat = np.concatenate([np.asarray(t, dtype=np.int64) for t in trains]) if n_units else np.empty(0, np.int64)
        units = np.repeat(np.arange(n_units, dtype=np.int64), lengths)
        return cls.from_spikes(flat, units, n_units)

    @classmethod
    def from_spikes(cls, samples: np.ndarray, unit_index: np.ndarray, n_units: int) -> SpikeIndex:
        """From parallel arrays (sample, unit index), e.g. a SpikeInterface spike vector."""
        samples = np.asarray(samples, dtype=np.int64)
        unit_index = np.asarray(unit_index, dtype=np.int64)
        if samples.size and samples.min() < 0:
            raise ValueError("spike samples must be >= 0 (shift them to the recording's first sample)")
        stride = int(samples.max()) + 2 if samples.size else 2
        stride = max(stride, 2)
        keys = np.sort(unit_index * stride + samples)
        return cls(keys=keys, stride=stride, n_units=int(n_units))

    def counts(self, onsets: np.ndarray, window: tuple[int, int]) -> np.ndarray:
        """Spike counts (trials x units, int64) in ``[onset + window[0], onset + window[1])``."""
        onsets = np.asarray(onsets, dtype=np.int64)
        lo = np.clip(onsets + window[0], 0, self.stride - 1)
        hi = np.clip(onsets + window[1], 0, self.stride - 1)
        base = (np.arange(self.n_units, dtype=np.int64) * self.stride)[None, :]
        left = np.searchsorted(self.keys, base + lo[:, None], side="left")
        right = np.searchsorted(self.keys, base + hi[:, None], side="left")
        return right - left


def rates_hz(
    counts: np.ndarray, window: tuple[int, int], sample_rate: float, out: np.ndarray | None = None
) -> np.ndarray:
    """Counts in a window of ``window[1] - window[0]`` samples -> rates in Hz (float32).

    ``out`` (float32, the shape of ``counts``) is written in place -- the daemon's preallocated row;
    the arithmetic is the same either way (cast to float32, then one float32 multiply)."""
    scale = np.float32(sample_rate / (window[1] - window[0]))
    if out is None:
        return np.asarray(counts, dtype=np.float32) * scale
    out[...] = counts
    out *= scale
    return out


def trial_counts(
    spike_samples: np.ndarray, spike_units: np.ndarray, n_units: int, onsets: np.ndarray, windows: list[tuple[int, int]]
) -> list[np.ndarray]:
    """Counts (trials x units) in each window for spikes given as parallel (sample, unit) arrays --
    the live trial tracker's call, through the same :class:`SpikeIndex` the builder counts with."""
    index = SpikeIndex.from_spikes(spike_samples, spike_units, n_units)
    return [index.counts(onsets, w) for w in windows]


@dataclass(frozen=True)
class BaselineStats:
    """Per-unit baseline mean and std (Hz), fit on a set of trials."""

    mean: np.ndarray  # (units,) float32
    std: np.ndarray  # (units,) float32, already floored
    fit_trials: np.ndarray  # indices of the trials they were fit on (provenance)

    @classmethod
    def fit(
        cls, baseline_rates: np.ndarray, fit_trials: np.ndarray | None = None, min_std_hz: float = 1.0
    ) -> BaselineStats:
        """Fit on ``baseline_rates[fit_trials]`` (trials x units). ``min_std_hz`` guards zero std."""
        b = np.asarray(baseline_rates, dtype=np.float64)
        idx = np.arange(len(b)) if fit_trials is None else np.asarray(fit_trials)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        if idx.size < 2:
            raise ValueError(f"baseline statistics need at least 2 fit trials, got {idx.size}")
        sub = b[idx]
        std = np.maximum(sub.std(axis=0, ddof=1), min_std_hz)
        return cls(mean=sub.mean(axis=0).astype(np.float32), std=std.astype(np.float32), fit_trials=idx)

    def normalise(self, response_rates: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``R = (r - mean) / std`` (float32), for any trials (rows) with the fitted units (cols);
        ``out`` receives it in place (same arithmetic)."""
        r = np.asarray(response_rates, dtype=np.float32)
        if r.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"responses have {r.shape[-1]} units, baseline has {self.mean.shape[0]}")
        if out is None:
            return (r - self.mean) / self.std
        np.subtract(r, self.mean, out=out)
        np.divide(out, self.std, out=out)
        return out


class RunningBaseline:
    """Baseline statistics that follow a live session: each unit's mean and variance of its
    baseline-window rate, exponentially weighted over about ``trials`` trials, starting from the
    calibration's :class:`BaselineStats`.

    Between sessions units are lost and gained and firing rates change. Normalised by the
    calibration's statistics, a unit gone silent gives ``R = -mean / std`` on every trial -- the
    same offset in every neural image -- and a unit that now fires more pushes its preferred
    stimuli into every image. Following the session's own baseline windows (which never see the
    trial's response), a silent unit's ``R`` returns to 0 and a changed unit's to its calibration
    scale within a few ``trials``. One trial at a time, update, then normalise::

        a = 1 / trials;  d = b - mean;  mean += a d;  var = (1 - a) (var + a d^2)

    and ``R = (r - mean) / max(sqrt(var), min_std_hz)``, float32 as :meth:`BaselineStats.normalise`.
    """

    def __init__(self, start: BaselineStats, trials: int, min_std_hz: float = 1.0) -> None:
        if trials < 1:
            raise ValueError(f"a running baseline needs a window of at least 1 trial, got {trials}")
        self.trials = int(trials)
        self.min_std_hz = float(min_std_hz)
        self.mean = np.asarray(start.mean, dtype=np.float64).copy()
        self.var = np.asarray(start.std, dtype=np.float64) ** 2
        self.seen = 0  # trials folded in
        self._diff = np.empty_like(self.mean)
        self.stats = BaselineStats(start.mean.astype(np.float32), start.std.astype(np.float32), np.empty(0, np.int64))

    def update(self, baseline_rates: np.ndarray) -> None:
        """Fold in one trial's baseline-window rates (units,), in place."""
        a = 1.0 / self.trials
        d = np.subtract(np.asarray(baseline_rates, dtype=np.float64).reshape(-1), self.mean, out=self._diff)
        self.mean += a * d
        d *= d
        self.var += a * d
        self.var *= 1.0 - a
        self.stats.mean[:] = self.mean
        np.sqrt(self.var, out=self._diff)
        np.maximum(self._diff, self.min_std_hz, out=self._diff)
        self.stats.std[:] = self._diff
        self.seen += 1

    def normalise(self, response_rates: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``R`` with the statistics as they stand (:meth:`BaselineStats.normalise`)."""
        return self.stats.normalise(response_rates, out)
