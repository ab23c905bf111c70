"""One animal's trials, responses and stimuli, ready for the experiments (per-session work).

``load_animal`` reads an Allen-layout session (a simulated animal folder, or a real session NWB
plus its natural-scene templates), keeps the non-blank natural-scene and static-grating
presentations, counts every unit's spikes in the response window, the baseline window and the
time bins of the temporal-spike-image variant (integer samples, half-open windows, see
``rtdecode.core.responses``), and builds the stimulus stack at the model's input size
(118 scenes, 120 gratings rendered in the same frame, gray; centred gray levels).

Normalised responses ``R`` are *not* computed here: their baseline statistics must be fit on
each fold's training trials (leakage rule), so :meth:`AnimalDataset.responses` takes the fit set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rtdecode.offline.allen import UnitFilter, open_session

from rtdecode.core.responses import BaselineStats, SpikeIndex, rates_hz, seconds_to_samples, window_samples
from rtdecode.core.stimuli import (
    N_NATURAL_SCENES,
    STIMULUS_GRAY,
    AllenFrame,
    centred,
    render_static_gratings,
    resize_images,
    static_grating_conditions,
)
from rtdecode.errors import NWBLayoutError
from rtdecode.parameters import default

N_CONDITIONS = N_NATURAL_SCENES + 120 + 1
GRAY_CONDITION = N_CONDITIONS - 1
LABELS = ("artificial", "natural")  # class index 0, 1


@dataclass(frozen=True)
class Windows:
    """Trial windows in ms relative to onset, half-open."""

    response_ms: tuple[float, float] = default("build.response_window_ms")
    baseline_ms: tuple[float, float] = default("build.baseline_window_ms")
    temporal_bin_ms: float = 10.0


@dataclass
class AnimalDataset:
    name: str
    sample_rate: float
    unit_ids: np.ndarray
    trials: pd.DataFrame  # one row per kept trial: start_time, onset_sample, family, label, condition
    labels: np.ndarray  # int64, 1 = natural, 0 = artificial
    condition: np.ndarray  # int64 index into stack
    stack: np.ndarray  # (N_CONDITIONS, size, size) float32, centred gray levels
    response_rates: np.ndarray  # trials x units, Hz
    baseline_rates: np.ndarray  # trials x units, Hz
    temporal_counts: np.ndarray  # trials x units x bins
    windows: Windows
    source: dict = field(default_factory=dict)

    @property
    def n_trials(self) -> int:
        return len(self.labels)

    @property
    def n_units(self) -> int:
        return len(self.unit_ids)

    def responses(
        self, fit_trials: np.ndarray, min_std_hz: float = default("build.min_baseline_std_hz")
    ) -> tuple[np.ndarray, BaselineStats]:
        """``R`` for every trial with baseline statistics fit on ``fit_trials`` only."""
        stats = BaselineStats.fit(self.baseline_rates, fit_trials, min_std_hz=min_std_hz)
        return stats.normalise(self.response_rates), stats


def condition_index(trials: pd.DataFrame) -> np.ndarray:
    """Stack index of every trial: scene frame, 118 + grating condition, or the gray blank."""
    cond = np.full(len(trials), GRAY_CONDITION, dtype=np.int64)
    ns = (trials.family == "natural_scenes").to_numpy() & ~trials.is_blank.to_numpy()
    cond[ns] = trials.frame.to_numpy()[ns].astype(np.int64)
    sg = (trials.family == "static_gratings").to_numpy() & ~trials.is_blank.to_numpy()
    grid = static_grating_conditions()
    keys = {tuple(np.round(row, 6)): k for k, row in enumerate(grid)}
    sg_vals = trials.loc[sg, ["orientation", "spatial_frequency", "phase"]].to_numpy(np.float64)
    idx = []
    for row in np.round(sg_vals, 6):  # one dict lookup per grating trial (table lookup, not math)
        key = tuple(row)
        if key not in keys:
            raise NWBLayoutError(
                f"static grating (orientation, spatial_frequency, phase) = {key} is not on the Brain "
                "Observatory 1.1 grid (6 orientations x 5 spatial frequencies x 4 phases)"
            )
        idx.append(keys[key])
    cond[sg] = N_NATURAL_SCENES + np.asarray(idx, dtype=np.int64)
    return cond


def load_natural_scenes(stimuli: Path) -> np.ndarray:
    """The 118 scene templates (uint8 or float, (118, H, W)) from a folder.

    Accepts ``natural_scenes.npy`` (as the simulator writes) or the AllenSDK cache's
    ``natural_scene_<n>.tiff`` files (n = 0..117)."""
    stimuli = Path(stimuli)
    npy = stimuli / "natural_scenes.npy"
    if npy.is_file():
        scenes = np.load(npy)
    else:
        tiffs = [stimuli / f"natural_scene_{n}.tiff" for n in range(N_NATURAL_SCENES)]
        missing = [p.name for p in tiffs if not p.is_file()]
        if missing:
            raise NWBLayoutError(
                f"{stimuli}: no natural_scenes.npy and {len(missing)} of the 118 natural_scene_<n>.tiff "
                f"templates missing (first: {missing[0]}); pass the folder holding the Allen templates"
            )
        from PIL import Image

        scenes = np.stack([np.asarray(Image.open(p)) for p in tiffs])
    if scenes.ndim != 3 or scenes.shape[0] != N_NATURAL_SCENES:
        raise NWBLayoutError(f"{stimuli}: expected 118 grayscale scenes (118, H, W), got shape {scenes.shape}")
    return scenes


def stimulus_stack(scenes: np.ndarray, image_size: int) -> np.ndarray:
    """All conditions at the model input size: scenes, gratings in the scenes' frame, gray."""
    frame = AllenFrame(height=scenes.shape[1], width=scenes.shape[2])
    grid = static_grating_conditions()
    gratings = render_static_gratings(frame, grid[:, 0], grid[:, 1], grid[:, 2])
    gray = np.full((1, *frame.shape), STIMULUS_GRAY, dtype=np.float32)
    full = np.concatenate([scenes.astype(np.float32), gratings, gray])
    return centred(resize_images(full, (image_size, image_size)))


def resolve_session(path: str | Path, stimuli: str | Path | None = None) -> dict:
    """Paths of a session: an animal folder (``animal.json``) or an NWB file (+ stimuli folder)."""
    path = Path(path)
    if path.is_dir():
        manifest = path / "animal.json"
        if not manifest.is_file():
            raise NWBLayoutError(f"{path}: a session folder must contain animal.json (as `rtdecode simulate` writes)")
        m = json.loads(manifest.read_text())
        return {
            "name": m["name"],
            "nwb": path / m["nwb"],
            "stimuli": Path(stimuli) if stimuli else path / m["stimuli"],
            "sample_rate": float(m["sample_rate"]),
            "folder": path,
            "manifest": m,
        }
    if path.suffix != ".nwb":
        raise NWBLayoutError(f"{path}: expected an animal folder or a session .nwb file")
    if stimuli is None:
        raise NWBLayoutError(f"{path}: a session NWB needs --stimuli DIR with the natural-scene templates")
    return {
        "name": path.stem,
        "nwb": path,
        "stimuli": Path(stimuli),
        "sample_rate": 30000.0,
        "folder": None,
        "manifest": None,
    }


def load_animal(
    path: str | Path,
    image_size: int = 224,
    windows: Windows = Windows(),
    unit_filter: UnitFilter | None = None,
    stimuli: str | Path | None = None,
) -> AnimalDataset:
    """Read one session into an :class:`AnimalDataset` (see module docstring)."""
    info = resolve_session(path, stimuli)
    fs = info["sample_rate"]
    with open_session(info["nwb"], unit_filter) as s:
        units = s.units()
        trials = s.trials(include_blanks=False)
        trains = [seconds_to_samples(st, fs) for _, st in s.iter_spike_times(units.id)]
    scenes = load_natural_scenes(info["stimuli"])
    source = {"nwb": str(info["nwb"]), "stimuli": str(info["stimuli"]), "folder": str(info["folder"])}
    return dataset_from_spikes(
        info["name"], trains, units.id.to_numpy(np.int64), trials, fs, scenes, image_size, windows, source
    )


def dataset_from_spikes(
    name: str,
    trains: list[np.ndarray],
    unit_ids: np.ndarray,
    trials: pd.DataFrame,
    sample_rate: float,
    scenes: np.ndarray,
    image_size: int,
    windows: Windows = Windows(),
    source: dict | None = None,
) -> AnimalDataset:
    """Count spikes (one int sample array per unit) around trial onsets.

    ``trials`` needs ``start_time`` (s, on the spikes' clock: sample / sample_rate), ``family``,
    ``is_blank``, ``label`` and the stimulus columns; blanks are dropped."""
    trials = trials[~trials.is_blank.to_numpy(bool)].reset_index(drop=True)
    if trials.empty:
        raise NWBLayoutError(f"{name}: no valid natural-scene or static-grating presentations")
    fs = float(sample_rate)
    onsets = seconds_to_samples(trials.start_time.to_numpy(), fs)
    trials = trials.assign(onset_sample=onsets)
    trials["condition"] = condition_index(trials)
    index = SpikeIndex.from_trains(trains)
    resp = window_samples(windows.response_ms, fs)
    base = window_samples(windows.baseline_ms, fs)
    bin_len = int(round(windows.temporal_bin_ms * fs / 1000))
    edges = np.arange(resp[0], resp[1], bin_len)
    temporal = np.stack([index.counts(onsets, (int(e), int(min(e + bin_len, resp[1])))) for e in edges], axis=2)
    return AnimalDataset(
        name=name,
        sample_rate=fs,
        unit_ids=np.asarray(unit_ids, dtype=np.int64),
        trials=trials,
        labels=(trials.label == "natural").to_numpy().astype(np.int64),
        condition=trials.condition.to_numpy(np.int64),
        stack=stimulus_stack(scenes, image_size),
        response_rates=rates_hz(index.counts(onsets, resp), resp, fs),
        baseline_rates=rates_hz(index.counts(onsets, base), base, fs),
        temporal_counts=temporal.astype(np.float32),
        windows=windows,
        source=source or {},
    )


def trials_from_stimulus_log(path: str | Path, first_sample_number: int, sample_rate: float) -> pd.DataFrame:
    """A recorded session's stimulus log as trials on the recording's clock.

    ``start_time`` = (onset_sample - first_sample_number) / sample_rate, i.e. seconds from the
    recording's first sample, so spike sample indices of the recording line up with it."""
    log = pd.read_csv(path)
    need = {"onset_sample", "family", "label", "frame", "orientation", "spatial_frequency", "phase"}
    missing = sorted(need - set(log.columns))
    if missing:
        raise NWBLayoutError(f"{path}: stimulus log lacks column(s) {', '.join(missing)}")
    out = log.copy()
    out["start_time"] = (out.onset_sample.to_numpy(np.int64) - int(first_sample_number)) / float(sample_rate)
    out["is_blank"] = out.label.eq("blank").to_numpy()
    return out
