"""Templates for the daemon: Kilosort 4 through SpikeInterface, or the simulator's ground truth.

Whichever spikes are used, templates are re-estimated with a SpikeInterface ``SortingAnalyzer``
on the daemon's own causal preprocessing (``rtdecode.sorting.preprocess``), which matched live
data better than Kilosort's whitened, PC-reconstructed ``templates.npy`` (reference/sorting.md
section 2.3). Per-channel noise levels come from the same preprocessed traces.

- ``kilosort4``: ``spikeinterface.sorters.run_sorter("kilosort4", ...)`` in-process on the CPU
  (or GPU when torch sees one). Kilosort is GPL-3: called, never copied.
- ``ground-truth``: the simulator's true spike trains (fast; for tests and demos).

When simulator ground truth exists, every sorted unit is scored against it with
``spikeinterface.comparison.compare_sorter_to_ground_truth``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtdecode.errors import RecordingError
from rtdecode.parameters import default
from rtdecode.sorting.preprocess import StreamingPreprocessor

TEMPLATE_MS_BEFORE = 1.0
TEMPLATE_MS_AFTER = 2.0


@dataclass
class SortResult:
    method: str
    unit_ids: np.ndarray
    trains: list[np.ndarray]  # spike sample indices (0 = the recording's first sample) per unit
    templates: np.ndarray  # (units, samples, channels) float32 uV, daemon preprocessing
    nbefore: int
    sparsity: np.ndarray  # (units, channels) bool
    noise_levels: np.ndarray  # (channels,) float32 uV, MAD-based
    accuracy: dict = field(default_factory=dict)  # per-unit accuracy vs ground truth, if known
    preprocessing: dict = field(default_factory=dict)


def read_recording(recording_dir: Path, probe_json: Path | None = None):
    """An Open Ephys Binary recording as a SpikeInterface recording, with its probe attached."""
    import spikeinterface.extractors as se

    try:
        rec = se.read_openephys(str(recording_dir))
    except Exception as err:  # neo raises many kinds on malformed folders
        raise RecordingError(f"{recording_dir}: cannot read as an Open Ephys Binary recording ({err})") from None
    if probe_json is not None and Path(probe_json).is_file():
        from probeinterface import read_probeinterface

        probe = read_probeinterface(probe_json).probes[0]
        if probe.get_contact_count() != rec.get_num_channels():
            raise RecordingError(
                f"{probe_json}: {probe.get_contact_count()} contacts for {rec.get_num_channels()} recorded channels"
            )
        rec.set_probe(probe)
    return rec


def preprocess_to_binary(
    rec,
    out_path: Path,
    highpass_hz: float = default("build.highpass_hz"),
    order: int = default("build.filter_order"),
    reference: str = default("build.common_reference"),
    chunk_s: float = 5.0,
    progress=None,
):
    """Run the daemon's streaming preprocessing over a whole recording into a float32 binary file;
    returns it as a SpikeInterface recording (with the same probe)."""
    import spikeinterface.core as sc

    fs = rec.get_sampling_frequency()
    n = rec.get_num_samples()
    pre = StreamingPreprocessor(rec.get_num_channels(), fs, highpass_hz, order, reference)
    chunk = int(chunk_s * fs)
    task = progress.add_task("preprocessing (causal high-pass + reference)", total=n) if progress else None
    out_path = Path(out_path)
    with open(out_path, "wb") as f:
        for s0 in range(0, n, chunk):
            s1 = min(n, s0 + chunk)
            f.write(pre.process(rec.get_traces(start_frame=s0, end_frame=s1, return_in_uV=True)).tobytes())
            if progress:
                progress.update(task, advance=s1 - s0)
    out = sc.read_binary(
        out_path,
        sampling_frequency=fs,
        dtype="float32",
        num_channels=rec.get_num_channels(),
        channel_ids=rec.channel_ids,
        gain_to_uV=1.0,
        offset_to_uV=0.0,
        is_filtered=True,
    )
    if rec.has_probe():
        out.set_probe(rec.get_probe())
    return out, pre.describe()


def ground_truth_sorting(animal_dir: Path, sample_rate: float):
    """The simulator's true spike trains as a SpikeInterface sorting (unit ids from units.csv), of
    the units that fire in this session (``present``; all of them in animals simulated before
    units could be lost or gained)."""
    import pandas as pd
    from spikeinterface.core import NumpySorting

    spikes = np.load(Path(animal_dir) / "ground_truth" / "spikes.npy")
    units = pd.read_csv(Path(animal_dir) / "ground_truth" / "units.csv")
    ids = units.unit_id.to_numpy(np.int64)
    present = units.present.to_numpy(bool) if "present" in units else np.ones(len(units), bool)
    return NumpySorting.from_samples_and_labels(
        [spikes["sample_index"]], [ids[spikes["unit_index"]]], sample_rate, unit_ids=ids[present]
    )


def run_kilosort4(rec, folder: Path, **params):
    """Kilosort 4 via SpikeInterface, in-process (no containers); CPU unless torch sees a GPU."""
    from spikeinterface.sorters import run_sorter

    defaults = {"do_correction": False, "torch_device": "auto", "progress_bar": False}
    try:
        return run_sorter(
            "kilosort4",
            rec,
            folder=str(folder),
            remove_existing_folder=True,
            verbose=False,
            **{**defaults, **params},
        )
    except Exception as err:
        raise RecordingError(f"Kilosort 4 failed on {folder}: {err}") from None


def templates_from_sorting(sorting, prep_rec, min_spikes: int = 20, seed: int = 0):
    """Templates, sparsity and noise levels on the preprocessed recording via a SortingAnalyzer."""
    import spikeinterface.core as sc

    sc.set_global_job_kwargs(progress_bar=False)
    counts = sorting.count_num_spikes_per_unit()
    keep = [u for u in sorting.unit_ids if counts[u] >= min_spikes]
    if not keep:
        raise RecordingError(f"no unit has at least {min_spikes} spikes; cannot estimate templates")
    sorting = sorting.select_units(keep)
    analyzer = sc.create_sorting_analyzer(
        sorting,
        prep_rec,
        format="memory",
        sparse=True,
        return_in_uV=True,
        seed=seed,
        sparsity_kwargs={"method": "radius", "radius_um": 60.0},
    )
    analyzer.compute("random_spikes", max_spikes_per_unit=300, seed=seed)
    analyzer.compute("templates", ms_before=TEMPLATE_MS_BEFORE, ms_after=TEMPLATE_MS_AFTER, operators=["average"])
    ext = analyzer.get_extension("templates")
    templates = ext.get_data(operator="average").astype(np.float32)  # dense (units, samples, channels)
    nbefore = int(ext.nbefore)
    noise = sc.get_noise_levels(
        prep_rec,
        return_in_uV=True,
        method="mad",
        random_slices_kwargs={"num_chunks_per_segment": 20, "chunk_size": 1000, "seed": seed},
    ).astype(np.float32)
    sparsity = analyzer.sparsity.mask.copy()
    return sorting, templates, nbefore, sparsity, noise


def compare_to_ground_truth(sorting, gt_sorting) -> dict:
    """Per ground-truth unit: best-matching sorted unit and its accuracy (SpikeInterface)."""
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    cmp = compare_sorter_to_ground_truth(gt_sorting, sorting, exhaustive_gt=True)
    perf = cmp.get_performance()
    return {
        "mean_accuracy": float(perf["accuracy"].mean()),
        "per_unit": {str(u): float(a) for u, a in perf["accuracy"].items()},
        "well_detected": int((perf["accuracy"] >= 0.8).sum()),
        "n_ground_truth_units": int(len(perf)),
    }


def compare_trains_to_ground_truth(animal_dir: Path, trains: list[np.ndarray], unit_ids, sample_rate: float) -> dict:
    """Spike trains (samples from the recording's first sample, one per unit) scored against the
    simulator's ground truth (:func:`compare_to_ground_truth`); ``{}`` where there is none."""
    from spikeinterface.core import NumpySorting

    if not (Path(animal_dir) / "ground_truth" / "spikes.npy").is_file():
        return {}
    samples = np.concatenate([np.asarray(t, np.int64) for t in trains]) if trains else np.empty(0, np.int64)
    labels = np.repeat(np.asarray(unit_ids, np.int64), [len(t) for t in trains])
    order = np.argsort(samples, kind="stable")
    sorting = NumpySorting.from_samples_and_labels([samples[order]], [labels[order]], sample_rate, unit_ids=unit_ids)
    return compare_to_ground_truth(sorting, ground_truth_sorting(animal_dir, sample_rate))


def sort_recording(
    animal_dir: Path,
    method: str,
    work_dir: Path,
    preprocessing: dict | None = None,
    progress=None,
    kilosort_params: dict | None = None,
) -> SortResult:
    """Sort an animal's recording (``kilosort4`` or ``ground-truth``) and estimate templates."""
    animal_dir = Path(animal_dir)
    manifest = json.loads((animal_dir / "animal.json").read_text())
    if not manifest.get("recording"):
        raise RecordingError(f"{animal_dir}: no recording (simulated with --no-recording?)")
    rec = read_recording(animal_dir / manifest["recording"], animal_dir / manifest.get("probe", "probe.json"))
    fs = rec.get_sampling_frequency()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    pp = {
        "highpass_hz": default("build.highpass_hz"),
        "order": default("build.filter_order"),
        "reference": default("build.common_reference"),
        **(preprocessing or {}),
    }
    prep, described = preprocess_to_binary(rec, work_dir / "preprocessed.raw", progress=progress, **pp)
    gt = ground_truth_sorting(animal_dir, fs) if (animal_dir / "ground_truth" / "spikes.npy").is_file() else None
    if method == "ground-truth":
        if gt is None:
            raise RecordingError(f"{animal_dir}: --templates ground-truth needs the simulator's ground_truth/ folder")
        sorting = gt
    elif method == "kilosort4":
        sorting = run_kilosort4(rec, work_dir / "kilosort4", **(kilosort_params or {}))
    else:
        raise ValueError(f"templates method must be 'kilosort4' or 'ground-truth', got {method!r}")
    sorting, templates, nbefore, sparsity, noise = templates_from_sorting(sorting, prep)
    accuracy = compare_to_ground_truth(sorting, gt) if (gt is not None and method != "ground-truth") else {}
    trains = [sorting.get_unit_spike_train(u).astype(np.int64) for u in sorting.unit_ids]
    return SortResult(
        method=method,
        unit_ids=np.asarray(sorting.unit_ids, dtype=np.int64),
        trains=trains,
        templates=templates,
        nbefore=nbefore,
        sparsity=sparsity,
        noise_levels=noise,
        accuracy=accuracy,
        preprocessing=described,
    )
