"""Probe drift for the simulator: how far the brain has moved along the shank, over a session.

A :class:`DriftSpec` names the motion as a lab would describe it -- a slow trend (µm per minute), a
sinusoid (amplitude and period), a step at a moment, an offset between sessions, and how much
deeper and shallower units differ (non-rigid) -- and :meth:`DriftSpec.motion` turns it into a
:class:`ProbeMotion`: the displacement along the shank (``y``, µm, positive = units seen further
from the tip) sampled at ``rate_hz``, and a factor per unit (1 everywhere for rigid motion). The
templates are moved through their spatial footprint by SpikeInterface's drifting-template machinery
(``DriftingTemplates``, ``InjectDriftingTemplatesRecording``; see ``extracellular.py``), and the
true motion is saved beside the ground truth (``ground_truth/motion.npz``).

``rtdecode simulate --drift "trend=3,sine=5/60,step=15@120,between=20,nonrigid=0.3"``.
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
    "the motion; 0 = rigid)"
)


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

    @classmethod
    def parse(cls, text: str) -> DriftSpec:
        """``"trend=3,sine=5/60,step=15@120,between=20,nonrigid=0.3"``; a ValueError naming the part
        and what was expected otherwise."""
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
                elif key == "between":
                    kw["between_um"] = float(value)
                elif key == "nonrigid":
                    kw["nonrigid"] = float(value)
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
        return spec

    @property
    def still(self) -> bool:
        return not (self.trend_um_per_min or self.sine_um or self.step_um or self.between_um)

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
