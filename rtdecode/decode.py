"""One closed trial -> one decision, with the core code the builder used.

``R_t = (rate - baseline mean) / baseline std`` (the bundle's calibration statistics),
``I_t = R_t PS`` (``core.neural_image.neural_images`` into a preallocated buffer), the bundle's
normalisation to a (1, 3, S, S) input (preallocated), the backend, softmax. The daemon and
:func:`decode_recording` (the offline path over a whole recording) both use :class:`TrialDecoder`,
so online and offline decisions on the same spikes are identical.
"""

from __future__ import annotations

import time

import numpy as np

from rtdecode.bundle import Bundle
from rtdecode.core.model_input import ImageNormalisation
from rtdecode.core.neural_image import neural_images
from rtdecode.core.responses import window_samples
from rtdecode.inference.base import softmax
from rtdecode.trials import ClosedTrial


class TrialDecoder:
    def __init__(self, bundle: Bundle, backend) -> None:
        m = bundle.manifest
        self.bundle = bundle
        self.backend = backend
        self.fs = float(m["sample_rate"])
        self.response = window_samples(tuple(m["windows"]["response_ms"]), self.fs)
        self.baseline = window_samples(tuple(m["windows"]["baseline_ms"]), self.fs)
        self.class_names = list(m["class_names"])
        n = m["normalisation"]
        self.norm = ImageNormalisation(n["mean"], n["std"], int(m["image_size"]))
        size = self.norm.image_size
        self.mean = bundle.baseline_mean.astype(np.float32)
        self.inv_std = (1.0 / bundle.baseline_std).astype(np.float32)
        self.rate_scale = np.float32(self.fs / (self.response[1] - self.response[0]))
        self._R = np.empty((1, bundle.n_units), dtype=np.float32)
        self._image = np.empty((1, size * size), dtype=np.float32)
        self._x = np.empty((1, 3, size, size), dtype=np.float32)

    def decide(self, trial: ClosedTrial) -> dict:
        """Decision fields and stage timestamps (monotonic ns) for one trial."""
        if trial.degraded:
            return {
                "status": "degraded: " + "; ".join(trial.degraded),
                "predicted_class": None,
                "probabilities": None,
                "t_image_ns": None,
                "t_inference_ns": None,
            }
        np.multiply(trial.response_counts, self.rate_scale, out=self._R[0], casting="unsafe")
        self._R -= self.mean
        self._R *= self.inv_std
        neural_images(self._R, self.bundle.preferred_stimuli, out=self._image)
        self.norm.to_model_input(self._image, out=self._x)
        t_image = time.monotonic_ns()
        p = softmax(self.backend.infer(self._x)[0].astype(np.float64))
        t_inf = time.monotonic_ns()
        k = int(np.argmax(p))
        return {
            "status": "ok",
            "predicted_class": self.class_names[k],
            "probabilities": {c: float(v) for c, v in zip(self.class_names, p, strict=True)},
            "t_image_ns": t_image,
            "t_inference_ns": t_inf,
        }


def decode_recording(
    bundle: Bundle,
    backend,
    recording_dir,
    channel_positions,
    threshold: float = 5.0,
    highpass_hz: float = 300.0,
    order: int = 3,
    reference: str = "median",
    ttl_line: int | None = None,
    block_samples: int = 600,
) -> list[dict]:
    """The offline path: sort a whole recording in blocks and decode every TTL onset, exactly as the
    daemon would (same sorter, same trial windows, same decoder). Returns one dict per onset."""
    from rtdecode.replay.replayer import RecordingSource
    from rtdecode.sorting.matcher import TemplateMatcher
    from rtdecode.sorting.online import OnlineSorter
    from rtdecode.sorting.preprocess import StreamingPreprocessor
    from rtdecode.trials import TrialTracker

    src = RecordingSource(recording_dir)
    bundle.check_stream(src.n_channels, src.sample_rate, source="recording")
    dec = TrialDecoder(bundle, backend)
    matcher = TemplateMatcher(
        bundle.templates, bundle.nbefore, bundle.sparsity, bundle.noise_levels, channel_positions, threshold=threshold
    )
    sorter = OnlineSorter(
        matcher, StreamingPreprocessor(src.n_channels, src.sample_rate, highpass_hz, order, reference)
    )
    line = bundle.manifest["ttl_line"] if ttl_line is None else ttl_line
    tracker = TrialTracker(bundle.n_units, line, dec.response, dec.baseline)
    out = []
    ttl_i = 0
    start = int(src.sample_numbers[0])
    for i0 in range(0, src.n_samples, block_samples):
        i1 = min(src.n_samples, i0 + block_samples)
        last = src.sample_numbers[i1 - 1]
        while ttl_i < len(src.ttl_samples) and src.ttl_samples[ttl_i] <= last:
            tracker.on_ttl(int(src.ttl_lines[ttl_i]), int(src.ttl_states[ttl_i]), int(src.ttl_samples[ttl_i]))
            ttl_i += 1
        block = src.samples[i0:i1].astype(np.float32) * src.bit_volts[None, :]
        s, u = sorter.process(block, int(src.sample_numbers[i0]))
        tracker.add_spikes(s, u)
        for trial in tracker.close_ready(sorter.sorted_until, start):
            out.append({"onset_sample": trial.onset_sample, "n_spikes": trial.n_spikes, **dec.decide(trial)})
    return out
