"""The templates a matcher sorts against, as one typed value (SpikeInterface-style ``Templates``).

A decoder bundle holds them (``templates.npz``); the builder makes them from a sort of the calibration
recording (``rtdecode.offline.sort``) and runs the bundle's own matcher over that recording with them,
so the bundle is calibrated on the spikes the daemon will see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtdecode.sorting.motion import DepthProfile


@dataclass(frozen=True)
class Templates:
    unit_ids: np.ndarray  # (units,) int64
    templates: np.ndarray  # (units, samples, channels) float32 uV, on the daemon's preprocessing
    nbefore: int  # samples before the peak
    sparsity: np.ndarray  # (units, channels) bool
    noise_levels: np.ndarray  # (channels,) float32 uV
    channel_positions: np.ndarray  # (channels, 2) um
    # where the calibration's detected peaks lie along the shank (the motion tracker's reference);
    # None: the tracker predicts it from the templates
    depth_profile: DepthProfile | None = None

    def __post_init__(self) -> None:
        n, _, c = self.templates.shape
        checks = [
            ("unit_ids", len(self.unit_ids), n),
            ("sparsity units", self.sparsity.shape[0], n),
            ("sparsity channels", self.sparsity.shape[1], c),
            ("noise_levels", len(self.noise_levels), c),
            ("channel_positions", len(self.channel_positions), c),
        ]
        bad = [f"{name} {got} (templates say {want})" for name, got, want in checks if got != want]
        if bad:
            raise ValueError("templates do not fit together: " + "; ".join(bad))

    @classmethod
    def of(cls, source, channel_positions: np.ndarray) -> Templates:
        """From anything that carries a sorter's template fields (``unit_ids``, ``templates``,
        ``nbefore``, ``sparsity``, ``noise_levels``): a sort result, or a loaded bundle."""
        return cls(
            unit_ids=np.asarray(source.unit_ids),
            templates=source.templates,
            nbefore=int(source.nbefore),
            sparsity=source.sparsity,
            noise_levels=source.noise_levels,
            channel_positions=np.asarray(channel_positions, dtype=np.float64),
            depth_profile=getattr(source, "depth_profile", None),
        )

    @property
    def n_units(self) -> int:
        return len(self.unit_ids)

    @property
    def n_channels(self) -> int:
        return self.templates.shape[2]
