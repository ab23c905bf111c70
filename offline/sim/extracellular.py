"""Extracellular voltage from spike trains: templates at unit positions, injected into noise.

Shared by the session simulator and the online benchmark. SpikeInterface generates the
waveforms (``generate_templates``: a monopolar current source seen by each contact) and lazily
sums them into Gaussian noise (``InjectTemplatesRecording`` over ``NoiseGeneratorRecording``), so a
384-channel recording is produced chunk by chunk, never whole in memory.
"""

from __future__ import annotations

import numpy as np

MS_BEFORE, MS_AFTER = 1.0, 3.0


def unit_templates(contact_positions: np.ndarray, unit_positions: np.ndarray, fs: float, seed: int):
    """(templates (units, samples, channels) float32 uV, nbefore) for units at (x, y, z) um."""
    from spikeinterface.core import generate_templates

    templates = generate_templates(
        np.asarray(contact_positions, dtype=float),
        np.asarray(unit_positions, dtype=float),
        fs,
        MS_BEFORE,
        MS_AFTER,
        seed=int(seed),
        unit_params={"alpha": (150.0, 600.0)},
    ).astype(np.float32)
    return templates, int(round(MS_BEFORE * fs / 1000))


def spike_vector(samples: list[np.ndarray], amp_factor: list[np.ndarray]) -> np.ndarray:
    """SpikeInterface-style structured spikes (sample_index, unit_index, amplitude), sorted by sample."""
    dtype = [("sample_index", "int64"), ("unit_index", "int64"), ("amplitude", "float32")]
    vec = np.zeros(sum(len(s) for s in samples), dtype=dtype)
    vec["sample_index"] = np.concatenate(samples) if samples else []
    vec["unit_index"] = np.repeat(np.arange(len(samples)), [len(s) for s in samples])
    vec["amplitude"] = np.concatenate(amp_factor) if amp_factor else []
    return vec[np.argsort(vec["sample_index"], kind="stable")]


def voltage_recording(
    spikes: np.ndarray,
    templates: np.ndarray,
    nbefore: int,
    noise_levels: np.ndarray,
    n_samples: int,
    fs: float,
    seed: int,
):
    """A lazy SpikeInterface recording: ``spikes`` (a ``spike_vector``) injected into white noise."""
    from spikeinterface.core import NumpySorting
    from spikeinterface.generation import InjectTemplatesRecording, NoiseGeneratorRecording

    sorting = NumpySorting.from_samples_and_labels([spikes["sample_index"]], [spikes["unit_index"]], fs)
    noise = NoiseGeneratorRecording(
        num_channels=templates.shape[2],
        sampling_frequency=fs,
        durations=[n_samples / fs],
        noise_levels=np.asarray(noise_levels, dtype=np.float32),
        seed=int(seed),
        strategy="on_the_fly",
    )
    return InjectTemplatesRecording(
        sorting,
        templates,
        nbefore=nbefore,
        parent_recording=noise,
        amplitude_factor=spikes["amplitude"],
        num_samples=[n_samples],
    )
