"""Probe geometry from probeinterface: the recorded channels of a Neuropixels 1.0 shank."""

from __future__ import annotations

import numpy as np


def neuropixels1_probe(n_channels: int = 384):
    """The first ``n_channels`` contacts (from the tip) of bank 0 of a Neuropixels 1.0 (NP1000).

    Built from probeinterface's bundled Neuropixels catalogue, no download. Device channel
    indices are 0..n_channels-1, matching the order of channels in the Open Ephys stream."""
    from probeinterface.neuropixels_tools import build_neuropixels_probe

    if not 1 <= n_channels <= 384:
        raise ValueError(f"a Neuropixels 1.0 records 1 to 384 channels at once, got {n_channels}")
    full = build_neuropixels_probe("NP1000")
    probe = full.get_slice(np.arange(n_channels))
    probe.set_device_channel_indices(np.arange(n_channels))
    return probe
