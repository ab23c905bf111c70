"""Templates moved along the shank: what the calibration templates look like after the probe moved.

When the brain moves by ``d`` um up the shank against the probe, a unit that was seen at depth ``y``
is now seen at ``y + d``: its waveform on the channel at ``y_c`` is the calibration waveform at
``y_c - d``. That is a spatial interpolation of each template over the probe geometry, written by
SpikeInterface (``get_spatial_interpolation_kernel``, the kriging kernel Kilosort and
``interpolate_motion`` use to correct traces); here it is applied to the templates instead of the
traces, so the stream is never resampled and the cost is paid once per move, not per block.
"""

from __future__ import annotations

import numpy as np
from spikeinterface.sortingcomponents.motion.motion_interpolation import get_spatial_interpolation_kernel

#: Kernel weights below this are dropped (a few sources per channel remain).
SPARSE_THRESHOLD = 1e-3


def move_templates(
    templates: np.ndarray, sparsity: np.ndarray, channel_positions: np.ndarray, displacement_um: float
) -> tuple[np.ndarray, np.ndarray]:
    """``templates`` (units x samples x channels) and their ``sparsity`` (units x channels) as seen
    with the units ``displacement_um`` further up the shank (negative: towards the tip). A unit
    moved past the end of the probe fades out there (no extrapolation)."""
    t = np.asarray(templates, dtype=np.float32)
    pos = np.asarray(channel_positions, dtype=np.float64)
    if displacement_um == 0:
        return t.copy(), np.asarray(sparsity, dtype=bool).copy()
    target = pos - np.array([0.0, float(displacement_um)])
    kernel = get_spatial_interpolation_kernel(pos, target, method="kriging", sparse_thresh=SPARSE_THRESHOLD)
    kernel = np.asarray(kernel, dtype=np.float32)  # (source channels, target channels), mostly zeros
    u, n, c = t.shape
    # one dense float32 product: at 384 channels ~8x faster than scipy.sparse's, for the same numbers
    moved = (t.reshape(u * n, c) @ kernel).reshape(u, n, c)
    mask = np.asarray(sparsity, dtype=np.float32) @ kernel >= 0.5
    return moved, mask
