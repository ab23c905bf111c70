"""Streaming preprocessing with carried state: causal high-pass and common reference.

SpikeInterface's filters are zero-phase and stateless per chunk (forward-backward with a
margin), which a live stream cannot do. Here a Butterworth high-pass in second-order sections
(designed by ``scipy.signal.butter``) runs causally, carrying its state from one chunk to the
next, so processing a recording in chunks of any size gives exactly the same output as
processing it whole. A common median (or average) reference across channels follows. The
builder computes templates on exactly this preprocessing, and the daemon runs it live.

The arithmetic is ``scipy.signal.sosfilt`` (direct form II transposed, float64 state) followed by
``np.median`` across channels, fused into one numba kernel that walks the (samples, channels)
chunk once: the inner loops run over contiguous channels, and the median is an exact selection
with branch-free partitions. At 384 channels this is several times cheaper than ``sosfilt`` plus
``np.median`` (``rtdecode bench online`` prints the ratio); tests hold it equal to them.

With ``threads > 1`` (``[sorting] preprocess_threads``, for machines with cores to spare: 1,536
channels) the same arithmetic runs in two passes over a thread pool, every kernel releasing the
interpreter lock: the filter over contiguous channel ranges (each range's state is its own), then
the reference over contiguous sample ranges (each sample's median needs every channel). The
filtered values pass between them in float64, so the output is bit for bit the single-thread one.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit
from scipy.signal import butter, sosfilt_zi

from rtdecode.parameters import default

REFERENCES = {"none": 0, "median": 1, "average": 2}


@njit(cache=True, nogil=True)
def _kth_smallest(a, n, k, b):  # pragma: no cover - compiled
    """The k-th smallest (0-based) of a[:n]; ``a`` and ``b`` are scratch buffers (overwritten)."""
    while n > 16:
        x0 = a[0]
        x1 = a[n >> 1]
        x2 = a[n - 1]
        p = max(min(x0, x1), min(max(x0, x1), x2))
        nl = 0
        nr = 0
        for i in range(n):  # branch-free three-way partition: < p stays in a, > p goes to b
            v = a[i]
            a[nl] = v
            b[nr] = v
            nl += v < p
            nr += v > p
        if k < nl:
            n = nl
        elif k < n - nr:
            return p
        else:
            k -= n - nr
            n = nr
            a, b = b, a
    for i in range(1, n):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v
    return a[k]


@njit(cache=True, nogil=True, inline="always")
def _filter_row(w, sos, zi):  # pragma: no cover - compiled
    """One sample of every channel (``w``, float64, in place) through the cascade of sections,
    direct form II transposed, state ``zi`` (sections, 2, channels) updated."""
    C = w.shape[0]
    for s in range(sos.shape[0]):
        b0 = sos[s, 0]
        b1 = sos[s, 1]
        b2 = sos[s, 2]
        a1 = sos[s, 4]
        a2 = sos[s, 5]
        for c in range(C):
            xi = w[c]
            yi = b0 * xi + zi[s, 0, c]
            zi[s, 0, c] = b1 * xi - a1 * yi + zi[s, 1, c]
            zi[s, 1, c] = b2 * xi - a2 * yi
            w[c] = yi


@njit(cache=True, nogil=True, inline="always")
def _row_reference(w, mode, a, b):  # pragma: no cover - compiled
    """The common reference of one sample: the median across channels (mode 1, the mean of the two
    middle values for an even count) or the mean (mode 2); ``a`` and ``b`` are scratch."""
    C = w.shape[0]
    half = C // 2
    ref = 0.0
    if mode == 1:
        for c in range(C):
            a[c] = w[c]
        if C % 2 == 1:
            ref = _kth_smallest(a, C, half, b)
        else:  # mean of the two middle values: the lower by selection, the upper by one pass
            lower = _kth_smallest(a, C, half - 1, b)
            n_le = 0
            upper = np.inf
            for c in range(C):
                v = w[c]
                n_le += v <= lower
                if v > lower and v < upper:
                    upper = v
            ref = 0.5 * (lower + (lower if n_le > half else upper))
    elif mode == 2:
        for c in range(C):
            ref += w[c]
        ref /= C
    return ref


@njit(cache=True, nogil=True)
def _highpass_reference(x, sos, zi, mode, out):  # pragma: no cover - compiled
    """Filter x (samples, channels) with ``sos`` from state ``zi`` (sections, 2, channels; updated
    in place), subtract the per-sample median (mode 1) or mean (mode 2), write float32 ``out``."""
    n, C = x.shape
    w = np.empty(C, np.float64)
    a = np.empty(C, np.float64)
    b = np.empty(C, np.float64)
    for t in range(n):
        for c in range(C):
            w[c] = x[t, c]
        _filter_row(w, sos, zi)
        ref = _row_reference(w, mode, a, b)
        for c in range(C):
            out[t, c] = w[c] - ref


@njit(cache=True, nogil=True)
def _highpass(x, sos, zi, y):  # pragma: no cover - compiled
    """The filter part of ``_highpass_reference`` on a channel range: float64 ``y``."""
    n, C = x.shape
    w = np.empty(C, np.float64)
    for t in range(n):
        for c in range(C):
            w[c] = x[t, c]
        _filter_row(w, sos, zi)
        for c in range(C):
            y[t, c] = w[c]


@njit(cache=True, nogil=True)
def _reference(y, mode, out):  # pragma: no cover - compiled
    """The reference part of ``_highpass_reference`` on a sample range of filtered float64 ``y``."""
    n, C = y.shape
    w = np.empty(C, np.float64)
    a = np.empty(C, np.float64)
    b = np.empty(C, np.float64)
    for t in range(n):
        for c in range(C):
            w[c] = y[t, c]
        ref = _row_reference(w, mode, a, b)
        for c in range(C):
            out[t, c] = w[c] - ref


def _ranges(n: int, parts: int) -> list[tuple[int, int]]:
    edges = np.linspace(0, n, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


class StreamingPreprocessor:
    """Causal high-pass + common reference for (samples, channels) float32 chunks."""

    def __init__(
        self,
        n_channels: int,
        sample_rate: float,
        highpass_hz: float = default("build.highpass_hz"),
        order: int = default("build.filter_order"),
        reference: str = default("build.common_reference"),
        threads: int = default("sorting.preprocess_threads"),
    ) -> None:
        if reference not in REFERENCES:
            raise ValueError(f"reference must be 'median', 'average' or 'none', got {reference!r}")
        if not 0 < highpass_hz < sample_rate / 2:
            raise ValueError(f"highpass_hz must be in (0, {sample_rate / 2}), got {highpass_hz}")
        self.n_channels = int(n_channels)
        self.sample_rate = float(sample_rate)
        self.highpass_hz = float(highpass_hz)
        self.order = int(order)
        self.reference = reference
        self._mode = REFERENCES[reference]
        self.sos = np.ascontiguousarray(butter(order, highpass_hz, btype="highpass", fs=sample_rate, output="sos"))
        self._zi0 = sosfilt_zi(self.sos)  # (sections, 2), step response steady state
        self.zi: np.ndarray | None = None
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = int(min(threads, self.n_channels))
        self._pool = ThreadPoolExecutor(self.threads, "rtdecode-preprocess") if self.threads > 1 else None
        self._y: np.ndarray | None = None  # float64 scratch between the two threaded passes

    def reset(self) -> None:
        """Forget the filter state (e.g. when acquisition restarts)."""
        self.zi = None

    def process(self, chunk: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Filter one (samples, channels) chunk, continuing from the previous one.

        ``out`` (float32, same shape) may be given to write into preallocated memory."""
        x = np.ascontiguousarray(chunk, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise ValueError(f"chunk must be (samples, {self.n_channels}), got {x.shape}")
        if out is None:
            out = np.empty(x.shape, dtype=np.float32)
        elif out.shape != x.shape or out.dtype != np.float32:
            raise ValueError(f"out must be float32 {x.shape}, got {out.dtype} {out.shape}")
        if x.shape[0] == 0:
            return out
        if self.zi is None:
            # Start in steady state for each channel's first value (no onset transient from the DC offset).
            self.zi = np.ascontiguousarray(self._zi0[:, :, None] * x[0][None, None, :], dtype=np.float64)
        if self._pool is None:
            _highpass_reference(x, self.sos, self.zi, self._mode, out)
        else:
            self._threaded(x, out)
        return out

    def _threaded(self, x: np.ndarray, out: np.ndarray) -> None:
        n = len(x)
        if self._y is None or len(self._y) < n:
            self._y = np.empty((max(n, 1024), self.n_channels), np.float64)  # grows once, to the largest block
        y = self._y[:n]
        zi, sos, pool = self.zi, self.sos, self._pool
        list(
            pool.map(
                lambda r: _highpass(x[:, r[0] : r[1]], sos, zi[:, :, r[0] : r[1]], y[:, r[0] : r[1]]),
                _ranges(self.n_channels, self.threads),
            )
        )
        list(pool.map(lambda r: _reference(y[r[0] : r[1]], self._mode, out[r[0] : r[1]]), _ranges(n, self.threads)))

    def describe(self) -> dict:
        return {
            "highpass_hz": self.highpass_hz,
            "order": self.order,
            "reference": self.reference,
            "filter": "butterworth sos, causal (sosfilt arithmetic with carried state)",
        }
