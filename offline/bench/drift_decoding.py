"""Decoding through drift: the lab's workflow on a drifting second session, motion tracking on and off.

One simulated animal, two sessions, with the same seed: once with the probe still and the same
units; where ``--drift`` names units lost or gained or rates that change, once with only those
changes; and once drifting (by default the second session starts 15 um up the shank from the first
and keeps drifting, with 10 % of the units lost, 10 % gained and rates changed by a log-normal factor
of spread 0.3). Each time the decoder bundle is built from session 1, as ``rtdecode build`` does,
and session 2 -- trials that never touched calibration -- is decoded through the daemon's own
pipeline (``rtdecode decode``'s path): the still animals once, the drifting one with
``[sorting] motion_tracking`` on and off. Accuracy is scored against the simulator's labels in total
and by quarter of the session (drift grows with time), with the tracker's estimate beside the true
motion at each quarter's end. The tracker's zero is where the bundle was calibrated: its templates
are averages over the calibration recording and its reference profile is registered to that
recording's average position, so the estimate is scored against the true motion less session 1's
average (``motion_zero_um``): the median absolute error over every decision that carried one. The
online sorter's accuracy against the simulator's ground truth on session 2 is measured beside each
row (``rtdecode sort-with-bundle``'s path, the same matcher and tracker).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from rtdecode.offline.sim.drift import SECOND_SESSION


def _score_by_quarter(records: list[dict], labels: pd.Series, n_samples: int, first_sample: int) -> dict:
    from rtdecode.scoring import score_decisions

    total = score_decisions(records, labels)
    edges = first_sample + np.linspace(0, n_samples, 5)
    quarters = []
    for q in range(4):
        part = [r for r in records if edges[q] <= r["onset_sample"] < edges[q + 1]]
        s = score_decisions(part, labels)
        motion = [r["motion_um"] for r in part if r["motion_um"] is not None]
        quarters.append({"accuracy": s["accuracy"], "n": s["n"], "motion_um_last": motion[-1] if motion else None})
    degraded = sum(r["status"] != "ok" for r in records)
    return {
        "accuracy": total["accuracy"],
        "ci95": total["ci95"],
        "n": total["n"],
        "degraded": degraded,
        "quarters": quarters,
    }


def _decode(bundle_dir: Path, source, tracking: bool, running_baseline: int) -> list[dict]:
    from rtdecode.bundle import Bundle
    from rtdecode.decode import decode_recording
    from rtdecode.pipeline import OnlinePipeline, rig_config_for_bundle

    bundle = Bundle.load(bundle_dir)
    cfg = rig_config_for_bundle(bundle)
    cfg = cfg.model_copy(
        update={
            "sorting": cfg.sorting.model_copy(update={"motion_tracking": tracking}),
            "trials": cfg.trials.model_copy(update={"running_baseline": running_baseline}),
        }
    )
    pipeline = OnlinePipeline(bundle, cfg, log=lambda *_: None)
    pipeline.warmup()
    return [d.record() for d in decode_recording(pipeline, source)]


def _true_motion(session: Path, at_samples: np.ndarray, first_sample: int, fs: float) -> list[float] | None:
    from rtdecode.offline.sim.drift import ProbeMotion

    path = session / "ground_truth" / "motion.npz"
    if not path.exists():
        return None
    return [float(v) for v in ProbeMotion.load(path).at((at_samples - first_sample) / fs)]


def _average_motion(session: Path) -> float:
    """Session ``session``'s true displacement averaged over the session (0 without drift)."""
    from rtdecode.offline.sim.drift import ProbeMotion

    path = session / "ground_truth" / "motion.npz"
    return float(ProbeMotion.load(path).displacement_um.mean()) if path.exists() else 0.0


def _motion_error(records: list[dict], session: Path, first_sample: int, fs: float, zero_um: float) -> float | None:
    """Median |estimate - (true motion - zero)| over the decisions that carried an estimate."""
    with_estimate = [r for r in records if r["motion_um"] is not None]
    if not with_estimate:
        return None
    at = np.array([r["onset_sample"] for r in with_estimate], dtype=np.float64)
    truth = _true_motion(session, at, first_sample, fs)
    if truth is None:  # a still probe: the truth is no motion at all
        truth, zero_um = [0.0] * len(at), 0.0
    est = np.array([r["motion_um"] for r in with_estimate])
    return float(np.median(np.abs(est - (np.asarray(truth) - zero_um))))


def _sorting_accuracy(bundle_dir: Path, session: Path, recording: Path, tracking: bool) -> float | None:
    """The online sorter's mean accuracy against the simulator's ground truth on ``session``."""
    from rtdecode.offline.own_spikes import online_spike_trains
    from rtdecode.offline.sort import compare_trains_to_ground_truth

    from rtdecode.bundle import Bundle
    from rtdecode.pipeline import rig_config_for_bundle
    from rtdecode.sorting.templates import Templates

    bundle = Bundle.load(bundle_dir)
    templates = Templates.of(bundle, bundle.channel_positions)
    sorting = rig_config_for_bundle(bundle).sorting.model_copy(update={"motion_tracking": tracking})
    trains, _, _ = online_spike_trains(recording, templates, sorting, bundle.manifest.preprocessing)
    truth = compare_trains_to_ground_truth(session, trains, templates.unit_ids, bundle.manifest.sample_rate)
    return truth.get("mean_accuracy")


def run_drift_decoding(
    work: Path,
    drift: str = SECOND_SESSION,
    channels: int = 32,
    units: int = 48,
    repeats: int = 2,
    image_size: int = 48,
    seed: int = 0,
    running_baseline: int | None = None,
    log=print,
    progress=None,
) -> dict:
    """Simulate, build and decode under ``work`` (animals and bundles); returns the results."""
    from rtdecode.offline.build import BuildConfig, build_bundle
    from rtdecode.offline.sim.drift import DriftSpec
    from rtdecode.offline.sim.simulate import SimulationParams, simulate

    from rtdecode.parameters import default
    from rtdecode.scoring import read_labels
    from rtdecode.stream.recording import RecordingSource

    running_baseline = default("trials.running_baseline") if running_baseline is None else running_baseline
    result: dict = {
        "drift": drift,
        "channels": channels,
        "units": units,
        "repeats": repeats,
        "seed": seed,
        "running_baseline": running_baseline,
        "rows": [],
    }
    parsed = DriftSpec.parse(drift)
    animals = [("still", "")]
    if parsed.turnover and not parsed.still:
        animals.append(("units change", parsed.only_turnover().text))
    animals.append(("drifting" if not parsed.still else "units change", drift))
    for name, spec in animals:
        log(
            f"{name}: simulating one animal, two sessions ({channels} ch, {units} units"
            + (f", drift {spec}) ..." if spec else ") ...")
        )
        params = SimulationParams(
            animals=1, channels=channels, units=units, repeats=repeats, seed=seed, sessions=2, drift=spec
        )
        target = simulate(params, work / name.replace(" ", "-") / "animals", progress=progress)[0]
        session2 = target.parent / f"{target.name}-s2"
        log(f"{name}: building the decoder bundle from session 1 ...")
        bundle = work / name.replace(" ", "-") / "bundle"
        with tempfile.TemporaryDirectory(prefix="rtdecode-drift-") as build_tmp:
            build_bundle(
                [],
                {},
                target,
                bundle,
                BuildConfig(
                    templates="ground-truth",
                    image_size=image_size,
                    seed=seed,
                    decoder="auto",
                    backbone="efficientnet-lite0",
                ),
                None,
                Path(build_tmp),
                progress=progress,
                log=lambda m: log(f"   {m}"),
                overwrite=True,
            )
        m = json.loads((session2 / "animal.json").read_text())
        labels = read_labels(session2 / m["stimulus_log"])
        source = RecordingSource(session2 / m["recording"])
        first, n, fs = int(source.sample_numbers[0]), int(source.n_samples), float(source.sample_rate)
        quarter_ends = first + np.linspace(0, n, 5)[1:]
        zero = _average_motion(target)  # where the bundle was calibrated: the tracker's zero
        for tracking in (True, False) if not DriftSpec.parse(spec).still else (True,):
            log(f"{name}: decoding session 2 with motion tracking {'on' if tracking else 'off'} ...")
            records = _decode(bundle, source, tracking, running_baseline)
            row = {"session": name, "motion_tracking": tracking, **_score_by_quarter(records, labels, n, first)}
            row["true_motion_um_at_quarter_ends"] = _true_motion(session2, quarter_ends, first, fs)
            row["motion_zero_um"] = zero
            row["motion_error_um"] = _motion_error(records, session2, first, fs, zero) if tracking else None
            log(f"{name}: sorting session 2 against its ground truth, tracking {'on' if tracking else 'off'} ...")
            row["sorting_accuracy"] = _sorting_accuracy(bundle, session2, session2 / m["recording"], tracking)
            result["rows"].append(row)
    return result
