"""The daemon's own spikes on a calibration recording: the bundle's preprocessing and matcher, run
offline over the recording block by block exactly as ``rtdecode serve`` would run them live.

A decoder calibrated on a sorter's spikes (Kilosort's, or the simulator's ground truth) and then fed
the online matcher's spikes sees two different neurons' worth of errors: its baseline, preferred
stimuli and classifier were fit on responses the daemon never produces. Counting the calibration
responses from these spikes instead makes calibration and decoding see the same spikes.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from rtdecode.config import SortingConfig
from rtdecode.manifest import Preprocessing
from rtdecode.pipeline import make_online_sorter
from rtdecode.sorting.motion import DepthProfile
from rtdecode.sorting.templates import Templates
from rtdecode.stream.recording import RecordingSource


class OnlineSpikes(NamedTuple):
    trains: list[np.ndarray]  # per unit, sample indices from the recording's first sample
    n_spikes: int
    # where the recording's detected peaks lie along the shank, registered over its own motion (the
    # motion tracker's reference for a bundle calibrated on it): recorded with ``fixed_templates``
    # only; None otherwise, or when the engine tracks no motion
    depth_profile: DepthProfile | None


def online_spike_trains(
    recording_dir: str | Path,
    templates: Templates,
    sorting: SortingConfig,
    preprocessing: Preprocessing,
    block_samples: int | None = None,
    seed: int = 0,
    progress=None,
    fixed_templates: bool = False,
) -> OnlineSpikes:
    """Spike trains per unit found by the online sorter, the number of spikes, and where the peaks
    lay along the shank. Blocks are the replayer's (GUI-like sizes from ``seed``). With
    ``fixed_templates`` the motion tracker only records where the peaks lie and the templates stay
    where they are (the builder's first pass, before the bundle has a reference profile)."""
    source = RecordingSource(recording_dir)
    if source.n_channels != templates.n_channels:
        raise ValueError(f"{recording_dir}: {source.n_channels} channels, the templates have {templates.n_channels}")
    sorter = make_online_sorter(templates, source.n_channels, source.sample_rate, sorting, preprocessing)
    recording = fixed_templates and sorter.motion is not None
    if recording:
        sorter.motion.record()
        sorter.moving = None
    first = int(source.sample_numbers[0])
    samples, units = [], []
    what = "where the peaks lie along the shank" if fixed_templates else "the daemon's own spikes (online matcher)"
    task = progress.add_task(what, total=source.n_samples) if progress else None
    for i0, i1, _, _ in source.blocks(block_samples, seed):
        s, u = sorter.process(source.block_uv(i0, i1), int(source.sample_numbers[i0]))
        samples.append(s - first)
        units.append(u)
        if progress:
            progress.update(task, advance=i1 - i0)
    s = np.concatenate(samples) if samples else np.empty(0, np.int64)
    u = np.concatenate(units) if units else np.empty(0, np.int64)
    order = np.argsort(u, kind="stable")
    bounds = np.searchsorted(u[order], np.arange(templates.n_units + 1))
    trains = [np.sort(s[order][bounds[k] : bounds[k + 1]]) for k in range(templates.n_units)]
    profile = sorter.motion.calibration_profile() if recording else None
    return OnlineSpikes(trains, int(len(s)), profile)
