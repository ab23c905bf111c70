"""One closed trial -> one decision, through the same core functions the builder used.

``rates_hz`` (counts -> Hz), ``BaselineStats.normalise`` (the bundle's calibration statistics; with
``[trials] running_baseline = N``, ``RunningBaseline``: the same statistics following the session's
own baseline windows over about N trials),
``neural_images`` (``I_t = R_t PS``) and ``ImageNormalisation.to_model_input`` (the bundle's
normalisation to a (1, 3, S, S) input) -- each writing into a buffer preallocated here -- then the
backend, the bundle's probability calibration (logits divided by its temperature) and a softmax.
Nothing of the method's arithmetic is written again in this file.

It also keeps the scale of the images it forms (the running std of their pixels, two dot products
per trial) beside the std of the images the network was trained on: ``image_scale`` reports the
ratio, 1 when the daemon's inputs are on the scale the network learned (DESIGN section 2, "One
scale"), and a drift indicator during a session.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from rtdecode.bundle import Bundle
from rtdecode.core.model_input import ImageNormalisation
from rtdecode.core.neural_image import neural_images
from rtdecode.core.responses import BaselineStats, RunningBaseline, rates_hz, window_samples
from rtdecode.degraded import Degraded, status_of
from rtdecode.inference.base import Backend, softmax
from rtdecode.trials import ClosedTrial


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the decoder says of one trial, with the monotonic time each stage ended."""

    status: str  # "ok" or "degraded: <reasons>"
    predicted_class: str | None
    probabilities: dict[str, float] | None
    t_image_ns: int | None
    t_inference_ns: int | None
    reasons: tuple[Degraded, ...] = ()  # why it is degraded, one entry per cause (empty when ok)


class TrialDecoder:
    def __init__(self, bundle: Bundle, backend: Backend, running_baseline: int = 0) -> None:
        m = bundle.manifest
        self.backend = backend
        self.fs = m.sample_rate
        self.response = window_samples(m.windows.response_ms, self.fs)
        self.baseline = window_samples(m.windows.baseline_ms, self.fs)
        self.class_names = list(m.class_names)
        self.temperature = m.probability.temperature if m.probability is not None else 1.0
        n = m.normalisation
        self.norm = ImageNormalisation(n.mean, n.std, m.image_size)
        self.stats = BaselineStats(
            mean=bundle.baseline_mean.astype(np.float32),
            std=bundle.baseline_std.astype(np.float32),
            fit_trials=np.empty(0, np.int64),
        )
        # 0: the calibration's statistics as they are; N: following the session from them
        self.running = RunningBaseline(self.stats, running_baseline) if running_baseline else None
        self._baseline_rates = np.empty((1, bundle.n_units), dtype=np.float32)
        self.preferred_stimuli = bundle.preferred_stimuli
        size = m.image_size
        self._rates = np.empty((1, bundle.n_units), dtype=np.float32)
        self._R = np.empty((1, bundle.n_units), dtype=np.float32)
        self._image = np.empty((1, size * size), dtype=np.float32)
        self._x = np.empty((1, 3, size, size), dtype=np.float32)
        self._pixel_sums = np.zeros(3, dtype=np.float64)  # count, sum, sum of squares of image pixels
        # for the dashboard: the latest ok trial's image is self._image; the mean image per called class
        self._class_sums = np.zeros((len(self.class_names), size * size), dtype=np.float64)
        self._class_counts = np.zeros(len(self.class_names), dtype=np.int64)
        self._latest: tuple[int, int] | None = None  # (onset sample, class index) of self._image

    def decide(self, trial: ClosedTrial) -> Verdict:
        if trial.degraded:
            reasons = tuple(trial.degraded)
            return Verdict(status_of(reasons), None, None, None, None, reasons)
        rates_hz(trial.response_counts[None, :], self.response, self.fs, out=self._rates)
        if self.running is None:
            self.stats.normalise(self._rates, out=self._R)
        else:  # the trial's own baseline window (before its response) joins the statistics first
            rates_hz(trial.baseline_counts[None, :], self.baseline, self.fs, out=self._baseline_rates)
            self.running.update(self._baseline_rates[0])
            self.running.normalise(self._rates, out=self._R)
        neural_images(self._R, self.preferred_stimuli, out=self._image)
        img = self._image[0]
        self._pixel_sums += (img.size, float(img.sum(dtype=np.float64)), float(np.dot(img, img)))
        self.norm.to_model_input(self._image, out=self._x)
        t_image = time.monotonic_ns()
        p = softmax(self.backend.infer(self._x)[0].astype(np.float64) / self.temperature)
        t_inf = time.monotonic_ns()
        k = int(np.argmax(p))
        self._class_sums[k] += img
        self._class_counts[k] += 1
        self._latest = (trial.onset_sample, k)
        probs = {c: float(v) for c, v in zip(self.class_names, p, strict=True)}
        return Verdict("ok", self.class_names[k], probs, t_image, t_inf)

    def images(self, side: int = 32) -> dict:
        """The latest ok trial's neural image and the mean image of each class as called so far,
        at most ``side`` x ``side`` pixels (nearest pixels of the model's image); for the dashboard,
        asked for off the hot path (a trial decided meanwhile may show through: it is a picture)."""
        size = self.norm.image_size
        idx = np.linspace(0, size - 1, min(side, size)).round().astype(np.int64)
        grid = np.ix_(idx, idx)
        latest = None
        if self._latest is not None:
            onset, k = self._latest
            img = self._image[0].reshape(size, size)[grid]
            latest = {"onset_sample": onset, "predicted_class": self.class_names[k], "pixels": img.tolist()}
        means = {}
        for k, name in enumerate(self.class_names):
            n = int(self._class_counts[k])
            if n:
                means[name] = {"trials": n, "pixels": (self._class_sums[k] / n).reshape(size, size)[grid].tolist()}
        return {"latest": latest, "class_means": means}

    @property
    def baseline_status(self) -> dict:
        """Where the units' baseline rates stand against the calibration's: with a running baseline,
        the trials folded in, the median ratio of rates, and the units now below a tenth of their
        calibration rate (of those that fired at >= 1 Hz there: lost since, or off their templates)."""
        if self.running is None:
            return {"running": "off ([trials] running_baseline = 0): the bundle's calibration statistics"}
        cal = self.stats.mean.astype(np.float64)
        fired = cal >= 1.0
        ratio = self.running.mean[fired] / cal[fired]
        return {
            "running": f"over ~{self.running.trials} trials",
            "trials": self.running.seen,
            "median_rate_ratio": float(np.median(ratio)) if ratio.size else None,
            "units_below_a_tenth": int((ratio < 0.1).sum()),
        }

    @property
    def image_scale(self) -> dict:
        """The std of the images decoded so far against the std of the training images."""
        n, total, squares = self._pixel_sums
        std = float(np.sqrt(max(squares / n - (total / n) ** 2, 0.0))) if n else None
        return {
            "trials": int(n // max(self._image.shape[1], 1)),
            "std": std,
            "training_std": self.norm.std,
            "ratio": std / self.norm.std if std is not None else None,
        }
