"""``rtdecode sort RECORDING --bundle B --out DIR``: a recording sorted with a bundle's templates.

The bundle's own preprocessing and matcher run over the recording block by block, as ``rtdecode
decode`` and the daemon run them (:func:`~rtdecode.offline.own_spikes.online_spike_trains`), and the
spikes are saved where the field's tools read them:

- ``spikeinterface``: a SpikeInterface sorting folder (``spikeinterface.load(DIR)``);
- ``phy``: a phy folder made by SpikeInterface's ``export_to_phy`` from a sorting analyzer on the
  recording (templates and waveforms from the raw traces, channel positions from the bundle).

Unit ids are the bundle's, so a unit keeps its id in every session sorted with the same bundle
(what Kilosort#738 asks for). Where the recording is a simulated animal's (a ``ground_truth``
folder beside it), the sorting is scored against the truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rtdecode.offline.own_spikes import online_spike_trains
from rtdecode.offline.sort import compare_trains_to_ground_truth, read_recording

from rtdecode.bundle import Bundle
from rtdecode.errors import RtdecodeError
from rtdecode.pipeline import rig_config_for_bundle
from rtdecode.sorting.templates import Templates
from rtdecode.stream.recording import RecordingSource

FORMATS = ("spikeinterface", "phy")


def animal_dir_of(recording: Path) -> Path | None:
    """The simulated animal folder holding ``recording`` (the one with ``ground_truth/``), if any."""
    for parent in [recording, *recording.parents][:5]:
        if (parent / "ground_truth" / "spikes.npy").is_file():
            return parent
    return None


def sort_with_bundle(
    recording: Path, bundle_path: Path, out: Path, fmt: str = "spikeinterface", progress=None, seed: int = 0
) -> dict:
    if fmt not in FORMATS:
        raise RtdecodeError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if out.exists() and any(out.iterdir()):
        raise RtdecodeError(f"--out {out} exists and is not empty; the sorting is written to a fresh folder")
    bundle = Bundle.load(bundle_path, verify=True)
    source = RecordingSource(recording)
    bundle.check_stream(source.n_channels, source.sample_rate, source=str(recording))
    templates = Templates.of(bundle, bundle.channel_positions)
    sorting_cfg = rig_config_for_bundle(bundle).sorting
    trains, n_spikes, _ = online_spike_trains(
        recording, templates, sorting_cfg, bundle.manifest.preprocessing, seed=seed, progress=progress
    )

    from spikeinterface.core import NumpySorting

    fs = float(source.sample_rate)
    samples = np.concatenate(trains) if trains else np.empty(0, np.int64)
    labels = np.repeat(templates.unit_ids, [len(t) for t in trains])
    order = np.argsort(samples, kind="stable")
    sorting = NumpySorting.from_samples_and_labels(
        [samples[order]], [labels[order]], fs, unit_ids=templates.unit_ids
    )  # fmt: skip
    if out.exists():
        out.rmdir()
    if fmt == "spikeinterface":
        sorting.save(folder=out)
    else:
        _export_phy(sorting, recording, bundle, out)
    animal = animal_dir_of(recording)
    truth = compare_trains_to_ground_truth(animal, trains, templates.unit_ids, fs) if animal is not None else {}
    return {
        "recording": str(recording),
        "bundle": str(bundle_path),
        "format": fmt,
        "out": str(out),
        "units": int(templates.n_units),
        "spikes": int(n_spikes),
        "spikes_per_unit": {int(u): len(t) for u, t in zip(templates.unit_ids, trains, strict=True)},
        "ground_truth": truth,
    }


def _export_phy(sorting, recording: Path, bundle: Bundle, out: Path) -> None:
    from spikeinterface.core import create_sorting_analyzer
    from spikeinterface.exporters import export_to_phy

    rec = read_recording(recording)
    if rec.get_num_channels() != bundle.templates.shape[2]:
        raise RtdecodeError(
            f"{recording}: {rec.get_num_channels()} channels as SpikeInterface reads it, the bundle's templates "
            f"have {bundle.templates.shape[2]}"
        )
    rec.set_channel_locations(np.asarray(bundle.channel_positions, np.float64))
    analyzer = create_sorting_analyzer(sorting, rec, format="memory", sparse=False)
    analyzer.compute(["random_spikes", "waveforms", "templates", "noise_levels"], verbose=False)
    export_to_phy(
        analyzer,
        out,
        compute_pc_features=False,
        compute_amplitudes=True,
        copy_binary=False,
        add_quality_metrics=False,
        add_template_metrics=False,
        verbose=False,
    )
