"""Probe drift for the simulator: how far the brain has moved along the shank, over a session, and
which units a later session still holds.

A :class:`DriftSpec` names the motion as a lab would describe it -- a slow trend (µm per minute), a
sinusoid (amplitude and period), a step at a moment, an offset between sessions, and how much
deeper and shallower units differ (non-rigid) -- and :meth:`DriftSpec.motion` turns it into a
:class:`ProbeMotion`: the displacement along the shank (``y``, µm, positive = units seen further
from the tip) sampled at ``rate_hz``, and a factor per unit (1 everywhere for rigid motion). The
templates are moved through their spatial footprint by SpikeInterface's drifting-template machinery
(``DriftingTemplates``, ``InjectDriftingTemplatesRecording``; see ``extracellular.py``), and the
true motion is saved beside the ground truth (``ground_truth/motion.npz``).

Between sessions a chronic probe also loses some units and picks up others, and firing rates
change. :meth:`DriftSpec.unit_rates` gives each unit a rate factor per session: 0 for a unit that
is silent in that session (``lost`` units fire in session 1 only, ``gained`` units in later
sessions only), and in later sessions a log-normal factor of spread ``rates`` on everything it
fires. Session 1 is the calibration day: every unit not gained fires at its own rates there.

``rtdecode simulate --drift "trend=3,sine=5/60,step=15@120,between=20,nonrigid=0.3,lost=0.1,gained=0.1,rates=0.3"``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

#: Samples per second of the motion trace (motion is slow: 10 Hz resolves a step within 100 ms).
MOTION_RATE_HZ = 10.0

SPEC_HELP = (
    "comma-separated KEY=VALUE: trend=UM_PER_MIN, sine=UM/PERIOD_S, step=UM@SECONDS (default: mid-session), "
    "between=UM (offset of each later session), nonrigid=F (units at the shank's ends move 1 +/- F times "
    "the motion; 0 = rigid), lost=F (share of units silent after session 1), gained=F (share silent in "
    "session 1 only), rates=S (spread of log firing-rate changes in later sessions, e.g. 0.3)"
)
#: A second session as a lab might find it the next day: 15 um up the shank, drifting on by 10 um a
#: minute, a tenth of the units lost and a tenth new, firing rates changed (``rtdecode bench drift``).
SECOND_SESSION = "between=15,trend=10,lost=0.1,gained=0.1,rates=0.3"

#: The spec's parts that are one number each, and the field each sets.
_SIMPLE_KEYS = {
    "between": "between_um",
    "nonrigid": "nonrigid",
    "lost": "lost",
    "gained": "gained",
    "rates": "rates",
}


@dataclass(frozen=True)
class ProbeMotion:
    rate_hz: float
    displacement_um: np.ndarray  # (n_times,) along the shank
    unit_factor: np.ndarray  # (n_units,) how much of the displacement each unit takes

    @property
    def times_s(self) -> np.ndarray:
        return np.arange(len(self.displacement_um)) / self.rate_hz

    def at(self, t_s: np.ndarray) -> np.ndarray:
        """The rigid displacement at times ``t_s`` (s from the session's start)."""
        return np.interp(t_s, self.times_s, self.displacement_um)

    def save(self, path: Path, spec: str) -> None:
        np.savez(
            path,
            times_s=self.times_s,
            displacement_um=self.displacement_um,
            unit_factor=self.unit_factor,
            rate_hz=self.rate_hz,
            spec=spec,
        )

    @classmethod
    def load(cls, path: Path) -> ProbeMotion:
        with np.load(path) as z:
            return cls(float(z["rate_hz"]), z["displacement_um"], z["unit_factor"])


@dataclass(frozen=True)
class DriftSpec:
    trend_um_per_min: float = 0.0
    sine_um: float = 0.0
    sine_period_s: float = 60.0
    step_um: float = 0.0
    step_at_s: float | None = None  # None: the middle of the session
    between_um: float = 0.0
    nonrigid: float = 0.0
    lost: float = 0.0
    gained: float = 0.0
    rates: float = 0.0

    @classmethod
    def parse(cls, text: str) -> DriftSpec:
        """``"trend=3,sine=5/60,step=15@120,between=20,nonrigid=0.3,lost=0.1"``; a ValueError naming
        the part and what was expected otherwise."""
        kw: dict[str, float | None] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            key, sep, value = part.partition("=")
            try:
                if not sep:
                    raise ValueError
                if key == "trend":
                    kw["trend_um_per_min"] = float(value)
                elif key == "sine":
                    amp, _, period = value.partition("/")
                    kw["sine_um"] = float(amp)
                    if period:
                        kw["sine_period_s"] = float(period)
                elif key == "step":
                    amp, _, at = value.partition("@")
                    kw["step_um"] = float(amp)
                    kw["step_at_s"] = float(at) if at else None
                elif key in _SIMPLE_KEYS:
                    kw[_SIMPLE_KEYS[key]] = float(value)
                else:
                    raise KeyError(key)
            except KeyError:
                raise ValueError(f"--drift {text!r}: unknown part {key!r}; {SPEC_HELP}") from None
            except ValueError:
                raise ValueError(f"--drift {text!r}: cannot read {part!r}; {SPEC_HELP}") from None
        spec = cls(**kw)
        values = [getattr(spec, f.name) for f in fields(spec) if getattr(spec, f.name) is not None]
        if not all(np.isfinite(values)) or spec.sine_period_s <= 0 or not 0 <= spec.nonrigid < 1:
            raise ValueError(f"--drift {text!r}: values must be finite, the period > 0 and nonrigid in [0, 1)")
        if min(spec.lost, spec.gained, spec.rates) < 0 or spec.lost + spec.gained >= 1:
            raise ValueError(
                f"--drift {text!r}: lost, gained and rates must be >= 0, and lost + gained < 1 (some units stay)"
            )
        return spec

    @property
    def still(self) -> bool:
        """No probe motion (units may still come and go between sessions)."""
        return not (self.trend_um_per_min or self.sine_um or self.step_um or self.between_um)

    @property
    def turnover(self) -> bool:
        """Units lost or gained, or rates changed, between sessions."""
        return bool(self.lost or self.gained or self.rates)

    def only_turnover(self) -> DriftSpec:
        """The same units coming and going, with the probe still."""
        return DriftSpec(lost=self.lost, gained=self.gained, rates=self.rates)

    @property
    def text(self) -> str:
        """The spec as :meth:`parse` reads it (``""`` for nothing at all)."""
        parts = []
        if self.trend_um_per_min:
            parts.append(f"trend={self.trend_um_per_min:g}")
        if self.sine_um:
            parts.append(f"sine={self.sine_um:g}/{self.sine_period_s:g}")
        if self.step_um:
            parts.append(f"step={self.step_um:g}" + ("" if self.step_at_s is None else f"@{self.step_at_s:g}"))
        parts += [f"{key}={getattr(self, name):g}" for key, name in _SIMPLE_KEYS.items() if getattr(self, name)]
        return ",".join(parts)

    def unit_rates(self, n_units: int, session: int, animal_key: list[int]) -> np.ndarray:
        """Each unit's firing-rate factor in session ``session`` (1-based): 0 where it is silent.

        Which units are lost or gained is the animal's (drawn from ``animal_key``, the same in every
        session); the rate changes are the session's own. Draws come from streams of their own, so
        an animal without turnover is the same as before turnover existed."""
        factor = np.ones(n_units)
        if not self.turnover:
            return factor
        order = np.random.default_rng(np.random.SeedSequence([*animal_key, 0x7A])).permutation(n_units)
        n_lost, n_gained = round(self.lost * n_units), round(self.gained * n_units)
        lost, gained = order[:n_lost], order[n_lost : n_lost + n_gained]
        if session == 1:
            factor[gained] = 0.0
            return factor
        rng = np.random.default_rng(np.random.SeedSequence([*animal_key, 0x7A, session]))
        factor *= np.exp(rng.normal(-0.5 * self.rates**2, self.rates, n_units))  # mean factor 1
        factor[lost] = 0.0
        return factor

    def motion(self, duration_s: float, session: int, unit_depth_um: np.ndarray) -> ProbeMotion:
        """The motion of session ``session`` (1-based) over ``duration_s``, for units at these depths."""
        t = np.arange(int(np.ceil(duration_s * MOTION_RATE_HZ)) + 2) / MOTION_RATE_HZ
        d = np.full_like(t, (session - 1) * self.between_um)
        d += self.trend_um_per_min * t / 60.0
        d += self.sine_um * np.sin(2 * np.pi * t / self.sine_period_s)
        step_at = duration_s / 2 if self.step_at_s is None else self.step_at_s
        d += np.where(t >= step_at, self.step_um, 0.0)
        depth = np.asarray(unit_depth_um, dtype=np.float64)
        span = max(float(np.ptp(depth)), 1e-9)
        factor = 1.0 + self.nonrigid * (2 * (depth - depth.min()) / span - 1)  # 1 - F at the tip .. 1 + F
        return ProbeMotion(MOTION_RATE_HZ, d, factor.astype(np.float32))
