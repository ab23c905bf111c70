"""A simulated mouse V1 population: receptive fields, linear-nonlinear drive, spike trains.

Cell classes (DESIGN section 7):

- **simple** cells: one Gabor receptive field (position, orientation, spatial frequency, phase,
  envelope size); drive = half-rectified linear projection of the centred stimulus;
- **complex** cells: energy model over a quadrature pair of Gabors (phase invariant);
- **texture** cells: the geometric mean of two orthogonal complex-cell energies, i.e. selective
  for conjunctions of orientations (corners, textures) that broadband natural scenes contain and
  a single grating does not;
- **untuned** visual cells: weak drive from local contrast energy in a large window;
- **non-visual** units: recorded outside VISp, spontaneous activity only.

Every visual unit's drive is divided by the contrast energy of its surround (surround
suppression, a unit-specific strength), which full-field gratings engage more than most scenes.
Drive passes through a Naka-Rushton nonlinearity, scaled per unit, to a firing rate. Each trial's
evoked rate is multiplied by a gamma-distributed trial gain (over-dispersion beyond Poisson) and
by a shared state gain that grows with running speed. The rate's time course is the 250 ms
presentation box convolved with a per-unit alpha-function impulse response after a response
latency, so responses spill into the next back-to-back presentation as in the Allen data.
Spikes are Poisson in 1 ms bins with a refractory period.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from rtdecode.core.stimuli import AllenFrame

KINDS = ("simple", "complex", "texture", "untuned", "non_visual")


@dataclass
class Population:
    """Per-unit parameters (all arrays of length n_units)."""

    kind: np.ndarray  # str, one of KINDS
    rf_x_deg: np.ndarray
    rf_y_deg: np.ndarray
    orientation_deg: np.ndarray
    sf_cpd: np.ndarray
    phase: np.ndarray  # fraction of a cycle
    sigma_deg: np.ndarray
    baseline_hz: np.ndarray
    peak_hz: np.ndarray
    latency_s: np.ndarray
    tau_s: np.ndarray
    running_gain: np.ndarray  # fractional gain increase at fast running
    surround_strength: np.ndarray  # divisive weight of surround contrast energy

    @property
    def n_units(self) -> int:
        return len(self.kind)

    @property
    def tuned(self) -> np.ndarray:
        return np.isin(self.kind, ("simple", "complex"))

    def as_records(self) -> list[dict]:
        """One dict per unit (JSON-serialisable), for the ground-truth files."""
        fields = self.__dataclass_fields__
        return [
            {k: (str(getattr(self, k)[i]) if k == "kind" else float(getattr(self, k)[i])) for k in fields}
            for i in range(self.n_units)
        ]


def make_population(
    rng: np.random.Generator,
    n_units: int,
    non_visual: np.ndarray,
    rf_centre_deg: tuple[float, float],
    kind_fractions: tuple[float, float, float, float] = (0.35, 0.30, 0.15, 0.20),
) -> Population:
    """Draw a population. ``non_visual`` marks units recorded outside VISp."""
    kind = rng.choice(np.array(KINDS[:4]), size=n_units, p=np.asarray(kind_fractions) / sum(kind_fractions))
    kind = np.where(non_visual, "non_visual", kind)
    sf = np.exp(rng.normal(np.log(0.05), 0.55, n_units)).clip(0.015, 0.3)
    sigma = (rng.uniform(0.25, 0.45, n_units) / sf).clip(3.0, 14.0)
    return Population(
        kind=kind,
        rf_x_deg=rf_centre_deg[0] + rng.normal(0, 9.0, n_units),
        rf_y_deg=rf_centre_deg[1] + rng.normal(0, 7.0, n_units),
        orientation_deg=rng.uniform(0, 180, n_units),
        sf_cpd=sf,
        phase=rng.uniform(0, 1, n_units),
        sigma_deg=np.where(kind == "untuned", sigma * 2.5, sigma),
        baseline_hz=np.exp(rng.normal(np.log(3.0), 0.6, n_units)).clip(0.3, 20),
        peak_hz=np.where(kind == "non_visual", 0.0, np.exp(rng.normal(np.log(25.0), 0.5, n_units)).clip(5, 90)),
        latency_s=rng.uniform(0.035, 0.075, n_units),
        tau_s=rng.uniform(0.012, 0.035, n_units),
        running_gain=rng.uniform(0.2, 0.9, n_units),
        surround_strength=rng.uniform(0.0, 2.0, n_units),
    )


def gabor_bank(pop: Population, frame: AllenFrame) -> tuple[np.ndarray, np.ndarray]:
    """Even and odd Gabor receptive fields, each (n_units, height*width) float32, unit L2 norm.

    Orientation and phase follow the grating renderer's convention, so a grating at the unit's
    orientation, spatial frequency and phase is its optimal stimulus."""
    x, y = frame.degree_grid()
    x = x.ravel()[None, :].astype(np.float32)
    y = y.ravel()[None, :].astype(np.float32)
    dx = x - pop.rf_x_deg[:, None].astype(np.float32)
    dy = y - pop.rf_y_deg[:, None].astype(np.float32)
    ori = np.deg2rad(pop.orientation_deg)[:, None].astype(np.float32)
    xr = dx * np.cos(ori) + dy * np.sin(ori)
    yr = -dx * np.sin(ori) + dy * np.cos(ori)
    sig = pop.sigma_deg[:, None].astype(np.float32)
    env = np.exp(-(xr**2 + (yr / 1.3) ** 2) / (2 * sig**2))
    arg = (
        2
        * np.pi
        * (
            pop.sf_cpd[:, None].astype(np.float32) * (x * np.cos(ori) + y * np.sin(ori))
            + pop.phase[:, None].astype(np.float32)
        )
    )
    even = env * np.cos(arg)
    odd = env * np.sin(arg)
    for g in (even, odd):
        g -= g.mean(axis=1, keepdims=True) * env / np.maximum(env.mean(axis=1, keepdims=True), 1e-12)
        g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    return even, odd


def true_linear_rf(pop: Population, frame: AllenFrame) -> np.ndarray:
    """The linear receptive field a linear estimate should recover: the even Gabor (n_units, H, W)."""
    even, _ = gabor_bank(pop, frame)
    return even.reshape(pop.n_units, *frame.shape)


def condition_rates(pop: Population, frame: AllenFrame, centred_stimuli: np.ndarray) -> np.ndarray:
    """Evoked firing rate (Hz, above baseline) of every unit for every stimulus image.

    ``centred_stimuli``: (n_conditions, height, width), gray = 0 (see ``core.stimuli.centred``).
    Returns (n_units, n_conditions), float64. One GEMM per filter bank."""
    s = centred_stimuli.reshape(len(centred_stimuli), -1).astype(np.float32)
    s2 = s.T**2
    even, odd = gabor_bank(pop, frame)
    lin_e = even @ s.T
    lin_o = odd @ s.T
    energy_ori = np.sqrt(lin_e**2 + lin_o**2)
    ortho = replace(pop, orientation_deg=pop.orientation_deg + 90.0)
    even_p, odd_p = gabor_bank(ortho, frame)
    energy_orth = np.sqrt((even_p @ s.T) ** 2 + (odd_p @ s.T) ** 2)
    # Local contrast energy in each unit's envelope (untuned cells) and in its surround.
    local = _gaussian_weights(pop, frame, 1.0) @ s2
    surround = _gaussian_weights(pop, frame, 3.0) @ s2
    drive = np.select(
        [(pop.kind == k)[:, None] for k in ("simple", "complex", "texture", "untuned")],
        [np.maximum(lin_e, 0), energy_ori, np.sqrt(energy_ori * energy_orth), np.sqrt(np.maximum(local, 0))],
        default=np.zeros_like(lin_e),
    ).astype(np.float64)
    rms_surround = np.sqrt(np.maximum(surround, 0)).astype(np.float64)
    drive = drive / (1.0 + pop.surround_strength[:, None] * rms_surround / 0.3)
    # Naka-Rushton with the semi-saturation at a unit-specific fraction of its strong drive.
    scale = np.percentile(drive, 97, axis=1, keepdims=True)
    d = drive / np.maximum(scale, 1e-9)
    c50 = 0.45
    resp = d**2 / (d**2 + c50**2)
    return pop.peak_hz[:, None] * resp


def _gaussian_weights(pop: Population, frame: AllenFrame, size: float) -> np.ndarray:
    """Isotropic Gaussian pooling weights (n_units, pixels) of ``size`` x the RF envelope, sum 1."""
    x, y = frame.degree_grid()
    dx = x.ravel()[None, :] - pop.rf_x_deg[:, None]
    dy = y.ravel()[None, :] - pop.rf_y_deg[:, None]
    w = np.exp(-(dx**2 + dy**2) / (2 * (size * pop.sigma_deg[:, None]) ** 2)).astype(np.float32)
    return w / w.sum(axis=1, keepdims=True)


def alpha_profile(
    latency_s: np.ndarray, tau_s: np.ndarray, duration_s: float, dt: float, length_s: float
) -> np.ndarray:
    """Per-unit response profile to one presentation: box(duration) * alpha(tau), delayed by latency.

    Returns (n_units, n_bins) with unit peak, sampled every ``dt`` seconds from onset."""
    t = np.arange(int(round(length_s / dt))) * dt
    tt = t[None, :] - latency_s[:, None]

    # Closed form of box [0, D) convolved with alpha kernel (t/tau) exp(1 - t/tau).
    def cum(u):
        u = np.maximum(u, 0) / tau_s[:, None]
        return 1 - (1 + u) * np.exp(-u)

    prof = cum(tt) - cum(tt - duration_s)
    prof /= np.maximum(prof.max(axis=1, keepdims=True), 1e-12)
    return prof


def running_speed_trace(
    rng: np.random.Generator, duration_s: float, rate_hz: float = 60.0
) -> tuple[np.ndarray, np.ndarray]:
    """Bouts of running and sitting (cm/s), sampled at ``rate_hz``. Returns (times_s, speed)."""
    n = int(duration_s * rate_hz) + 1
    t = np.arange(n) / rate_hz
    # Alternating states with exponential dwell times.
    dwell = rng.exponential(15.0, size=int(duration_s / 3) + 4)
    edges = np.cumsum(dwell)
    state = (np.searchsorted(edges, t) + int(rng.integers(2))) % 2
    target = np.where(state == 1, 18.0, 0.5)
    noise = rng.normal(0, 4.0, n)
    # One-pole smoothing (time constant ~1 s) done as an FFT-free recursive filter via lfilter.
    from scipy.signal import lfilter

    a = np.exp(-1.0 / rate_hz)
    speed = lfilter([1 - a], [1, -a], target + noise * np.sqrt(state + 0.05))
    return t, np.maximum(speed, 0.0)


def state_gain(pop: Population, speed_cm_s: np.ndarray) -> np.ndarray:
    """Multiplicative gain (n_units, n_samples) from running speed: 1 + g * s / (s + 10)."""
    s = np.asarray(speed_cm_s)[None, :]
    return 1.0 + pop.running_gain[:, None] * s / (s + 10.0)


def generate_spike_trains(
    rng: np.random.Generator,
    pop: Population,
    onset_s: np.ndarray,
    trial_rates: np.ndarray,
    duration_s: float,
    presentation_s: float,
    speed_t: np.ndarray,
    speed: np.ndarray,
    dt: float = 0.001,
    refractory_s: float = 0.0015,
    chunk_s: float = 30.0,
) -> list[np.ndarray]:
    """Spike times (s, sorted) per unit over ``[0, duration_s)``.

    ``trial_rates`` (n_units, n_trials) are evoked rates above baseline per presentation, already
    including trial-to-trial gain; the running-speed state gain multiplies everything."""
    profile = alpha_profile(pop.latency_s, pop.tau_s, presentation_s, dt, presentation_s + 0.35)
    plen = profile.shape[1]
    n_bins = int(np.ceil(duration_s / dt))
    onset_bin = np.round(onset_s / dt).astype(np.int64)
    chunk = int(chunk_s / dt)
    nfft = 1 << int(np.ceil(np.log2(chunk + 2 * plen)))
    prof_f = np.fft.rfft(profile, nfft, axis=1)
    out: list[list[np.ndarray]] = [[] for _ in range(pop.n_units)]
    for c0 in range(0, n_bins, chunk):
        c1 = min(n_bins, c0 + chunk)
        lo = c0 - plen
        sel = (onset_bin >= lo) & (onset_bin < c1)
        impulses = np.zeros((pop.n_units, c1 - lo))
        np.add.at(impulses, (slice(None), onset_bin[sel] - lo), trial_rates[:, sel])
        evoked = np.fft.irfft(np.fft.rfft(impulses, nfft, axis=1) * prof_f, nfft, axis=1)[:, plen : plen + c1 - c0]
        t_bins = (np.arange(c0, c1) + 0.5) * dt
        gain = state_gain(pop, np.interp(t_bins, speed_t, speed))
        rate = (pop.baseline_hz[:, None] + np.maximum(evoked, 0)) * gain
        counts = rng.poisson(rate * dt)
        units, bins = np.nonzero(counts)
        reps = counts[units, bins]
        units = np.repeat(units, reps)
        times = (np.repeat(bins, reps) + c0 + rng.random(reps.sum())) * dt
        order = np.lexsort((times, units))
        units, times = units[order], times[order]
        splits = np.searchsorted(units, np.arange(1, pop.n_units))
        for u, st in enumerate(np.split(times, splits)):
            out[u].append(st)
    trains = []
    for parts in out:
        st = np.concatenate(parts) if parts else np.empty(0)
        trains.append(_enforce_refractory(st, refractory_s))
    return trains


def _enforce_refractory(st: np.ndarray, refractory_s: float) -> np.ndarray:
    """Drop spikes closer than ``refractory_s`` to the previous kept spike (repeat until clean)."""
    while st.size > 1:
        bad = np.flatnonzero(np.diff(st) < refractory_s)
        if bad.size == 0:
            break
        st = np.delete(st, bad + 1)
    return st
