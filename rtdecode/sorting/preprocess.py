"""Streaming preprocessing with carried state: causal high-pass and common reference.

SpikeInterface's filters are zero-phase and stateless per chunk (forward-backward with a
margin), which a live stream cannot do. Here a Butterworth high-pass in second-order sections is
run with ``scipy.signal.sosfilt`` carrying its ``zi`` state from one chunk to the next, so
processing a recording in chunks of any size gives exactly the same output as processing it
whole. A common median (or average) reference across channels follows. The builder computes
templates on exactly this preprocessing, and the daemon runs it live.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt, sosfilt_zi


class StreamingPreprocessor:
    """Causal high-pass + common reference for (samples, channels) float32 chunks."""

    def __init__(
        self,
        n_channels: int,
        sample_rate: float,
        highpass_hz: float = 300.0,
        order: int = 3,
        reference: str = "median",
    ) -> None:
        if reference not in ("median", "average", "none"):
            raise ValueError(f"reference must be 'median', 'average' or 'none', got {reference!r}")
        if not 0 < highpass_hz < sample_rate / 2:
            raise ValueError(f"highpass_hz must be in (0, {sample_rate / 2}), got {highpass_hz}")
        self.n_channels = int(n_channels)
        self.sample_rate = float(sample_rate)
        self.highpass_hz = float(highpass_hz)
        self.order = int(order)
        self.reference = reference
        self.sos = butter(order, highpass_hz, btype="highpass", fs=sample_rate, output="sos")
        self._zi0 = sosfilt_zi(self.sos)  # (sections, 2), step response steady state
        self.zi: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the filter state (e.g. when acquisition restarts)."""
        self.zi = None

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Filter one (samples, channels) chunk, continuing from the previous one."""
        x = np.asarray(chunk, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise ValueError(f"chunk must be (samples, {self.n_channels}), got {x.shape}")
        if x.shape[0] == 0:
            return x.copy()
        if self.zi is None:
            # Start in steady state for each channel's first value (no onset transient from the DC offset).
            self.zi = (self._zi0[:, :, None] * x[0][None, None, :]).astype(np.float64)
        y, self.zi = sosfilt(self.sos, x, axis=0, zi=self.zi)
        y = y.astype(np.float32)
        if self.reference == "median":
            y -= np.median(y, axis=1, keepdims=True)
        elif self.reference == "average":
            y -= y.mean(axis=1, keepdims=True)
        return y

    def describe(self) -> dict:
        return {
            "highpass_hz": self.highpass_hz,
            "order": self.order,
            "reference": self.reference,
            "filter": "butterworth sos, causal (sosfilt with carried state)",
        }
