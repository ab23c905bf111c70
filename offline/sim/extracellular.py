"""Extracellular voltage from spike trains: templates at unit positions, injected into noise.

Shared by the session simulator and the online benchmark. SpikeInterface generates the
waveforms (``generate_templates``: a monopolar current source seen by each contact) and lazily
sums them into Gaussian noise (``InjectTemplatesRecording`` over ``NoiseGeneratorRecording``), so a
384-channel recording is produced chunk by chunk, never whole in memory. With a probe motion
(``drift.ProbeMotion``) the templates are moved along the shank through their spatial footprint
instead (``DriftingTemplates`` precomputed in 1 µm steps, ``InjectDriftingTemplatesRecording``).
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
    motion=None,
    probe=None,
):
    """A lazy SpikeInterface recording: ``spikes`` (a ``spike_vector``) injected into white noise;
    with ``motion`` (a ``drift.ProbeMotion``; needs the ``probe``) the templates drift with it."""
    from spikeinterface.core import NumpySorting
    from spikeinterface.generation import InjectTemplatesRecording, NoiseGeneratorRecording

    sorting = NumpySorting.from_samples_and_labels(  # every unit, also those silent in this session
        [spikes["sample_index"]], [spikes["unit_index"]], fs, unit_ids=np.arange(templates.shape[0])
    )
    noise = NoiseGeneratorRecording(
        num_channels=templates.shape[2],
        sampling_frequency=fs,
        durations=[n_samples / fs],
        noise_levels=np.asarray(noise_levels, dtype=np.float32),
        seed=int(seed),
        strategy="on_the_fly",
    )
    if motion is None:
        return InjectTemplatesRecording(
            sorting,
            templates,
            nbefore=nbefore,
            parent_recording=noise,
            amplitude_factor=spikes["amplitude"],
            num_samples=[n_samples],
        )
    from spikeinterface.core import Templates
    from spikeinterface.generation import DriftingTemplates, InjectDriftingTemplatesRecording

    if probe is None:
        raise ValueError("drifting templates need the probe geometry")
    drifting = DriftingTemplates.from_static_templates(
        Templates(templates_array=templates, sampling_frequency=fs, nbefore=nbefore, probe=probe)
    )
    reach = motion.displacement_um[:, None] * motion.unit_factor[None, :]  # every displacement a unit takes
    steps = np.arange(np.floor(reach.min()) - 1, np.ceil(reach.max()) + 2, 1.0)
    drifting.precompute_displacements(np.stack([np.zeros_like(steps), steps], axis=1))
    vector = np.zeros((len(motion.displacement_um), 2, 1))
    vector[:, 1, 0] = motion.displacement_um  # along the shank (y)
    return InjectDriftingTemplatesRecording(
        sorting,
        drifting,
        [vector],
        motion.rate_hz,
        displacement_unit_factor=np.asarray(motion.unit_factor, dtype=np.float32)[:, None],
        parent_recording=noise,
        amplitude_factor=spikes["amplitude"],
        num_samples=[n_samples],
    )
