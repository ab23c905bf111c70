"""``rtdecode build``: training sessions + a target animal's recording -> a decoder bundle.

1. Training sessions: neural images of every trial, cross-fitted (leakage-free), normalised per
   animal; the classifier is trained on all of them.
2. Target: its recording is sorted (Kilosort 4 or the simulator's ground truth) and templates
   are estimated on the daemon's preprocessing; its trials come from its stimulus log. A
   stratified calibration split fits the baseline statistics, ``PS`` and the image normalisation
   (on cross-fitted calibration images); the held-out rest scores the bundle.
3. ONNX export (static 1x3xSxS) with a parity check against torch on held-out inputs.
4. The bundle is written atomically with a sha256 manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rtdecode.offline.classifiers import GoogLeNetClassifier, LinearImageClassifier
from rtdecode.offline.dataset import (
    AnimalDataset,
    Windows,
    dataset_from_spikes,
    load_natural_scenes,
    trials_from_stimulus_log,
)
from rtdecode.offline.evaluate import _full_crossfit, calibration_split, versions
from rtdecode.offline.experiments import split_images
from rtdecode.offline.export import check_parity, export_onnx, quantize_int8
from rtdecode.offline.sort import SortResult, sort_recording

from rtdecode.bundle import CLASS_NAMES, npy_bytes, npz_bytes, write_bundle
from rtdecode.core.model_input import ImageNormalisation


@dataclass
class BuildConfig:
    templates: str = "ground-truth"
    image_size: int = 224
    mode: str = "head"
    epochs: int = 10
    weights: str | None = None
    seed: int = 0
    calibration_fraction: float = 0.5
    windows: Windows = Windows()
    decoder: str = "googlenet"  # or "linear": the linear read-out of neural images


def target_dataset(animal_dir: Path, sorted_units: SortResult, image_size: int, windows: Windows) -> AnimalDataset:
    """The target's trials (stimulus log) with responses counted from its sorted spikes."""
    m = json.loads((animal_dir / "animal.json").read_text())
    trials = trials_from_stimulus_log(animal_dir / m["stimulus_log"], m["first_sample_number"], m["sample_rate"])
    scenes = load_natural_scenes(animal_dir / m["stimuli"])
    return dataset_from_spikes(
        m["name"],
        sorted_units.trains,
        sorted_units.unit_ids,
        trials,
        m["sample_rate"],
        scenes,
        image_size,
        windows,
        {"folder": str(animal_dir)},
    )


def build_bundle(
    train: list[AnimalDataset],
    train_refs: dict,
    target_dir: Path,
    out: Path,
    cfg: BuildConfig,
    executor,
    work_dir: Path,
    progress=None,
    log=print,
    overwrite: bool = False,
) -> dict:
    """Run the whole build; returns the bundle's report dict."""
    target_dir = Path(target_dir)
    tm = json.loads((target_dir / "animal.json").read_text())
    if tm["name"] in {d.name for d in train}:
        raise ValueError(
            f"the target {tm['name']} is also a training session; its held-out trials would leak "
            "into training. Train on other animals."
        )
    log(f"sorting {tm['name']}'s recording ({cfg.templates}) ...")
    sorted_units = sort_recording(target_dir, cfg.templates, work_dir, progress=progress)
    log(
        f"  {len(sorted_units.unit_ids)} units with templates"
        + (
            f"; mean accuracy vs ground truth {sorted_units.accuracy['mean_accuracy']:.2f}"
            if sorted_units.accuracy
            else ""
        )
    )
    target = target_dataset(target_dir, sorted_units, cfg.image_size, cfg.windows)

    if cfg.decoder not in ("googlenet", "linear"):
        raise ValueError(f"decoder {cfg.decoder!r}: expected googlenet or linear")
    clf = (
        LinearImageClassifier(cfg.image_size, seed=cfg.seed)
        if cfg.decoder == "linear"
        else GoogLeNetClassifier(
            cfg.weights, cfg.mode, finetune_epochs=cfg.epochs, seed=cfg.seed, image_size=cfg.image_size
        )
    )
    log(f"classifier: {clf.description}")
    parts = [executor.submit(_full_crossfit, train_refs[d.name], cfg.seed).result() for d in train]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    log(f"training on {len(y_train)} neural images from {', '.join(d.name for d in train)} ...")
    model, curve = clf.fit(x_train, y_train)

    cal, test = calibration_split(target, cfg.calibration_fraction, cfg.seed)
    split = split_images(target, cal, test, cfg.seed)
    norm: ImageNormalisation = split.normalisation
    x_test = norm.to_model_input(split.test.images)
    from rtdecode.offline.model import predict_proba

    p = predict_proba(model, x_test)[:, 1]
    acc = float(((p >= 0.5) == target.labels[test]).mean())
    log(f"held-out accuracy on {tm['name']}: {acc:.1%} ({len(test)} trials not used for calibration)")

    out = Path(out)
    work_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(model, work_dir / "model.onnx", cfg.image_size)
    parity = check_parity(model, onnx_path, x_test[: min(32, len(x_test))])
    log(f"ONNX parity: max |torch - onnxruntime| = {parity.max_abs_diff:.1e} on {parity.n_inputs} held-out inputs")
    rng = np.random.default_rng(cfg.seed)
    calib = x_train[np.sort(rng.choice(len(x_train), min(64, len(x_train)), replace=False))]
    int8 = quantize_int8(onnx_path, work_dir / "model.int8.onnx", calib, x_test)
    log(
        f"INT8 model: decisions agree with fp32 on {int8.agreement:.1%} of {int8.n_heldout} held-out inputs"
        + ("" if int8.path else f" -- not included: {int8.reason}")
    )

    import torch

    pt = work_dir / "model.pt"
    torch.save(model.state_dict(), pt)
    report = {
        "target": tm["name"],
        "train_sessions": [d.name for d in train],
        "classifier": clf.description,
        "pretrained_weights": clf.pretrained,
        "training_curve": curve,
        "n_training_images": int(len(y_train)),
        "calibration_trials": cal.tolist(),
        "heldout_trials": test.tolist(),
        "heldout_accuracy": acc,
        "heldout_p_natural": p.tolist(),
        "onnx_parity": parity.as_dict(),
        "int8": int8.as_manifest(),
        "sorting": {
            "method": sorted_units.method,
            "n_units": int(len(sorted_units.unit_ids)),
            "accuracy_vs_ground_truth": sorted_units.accuracy,
            "preprocessing": sorted_units.preprocessing,
        },
        "versions": versions(),
    }
    size = cfg.image_size
    from probeinterface import read_probeinterface

    channel_positions = read_probeinterface(target_dir / tm.get("probe", "probe.json")).probes[0].contact_positions
    manifest = {
        "target": tm["name"],
        "train_sessions": [d.source.get("folder") or d.source.get("nwb") for d in train],
        "templates_method": cfg.templates,
        "sample_rate": float(tm["sample_rate"]),
        "channel_count": int(tm["channels"]),
        "stream_name": tm.get("stream_name"),
        "channel_map": list(range(int(tm["channels"]))),
        "probe": tm.get("probe"),
        "first_sample_number": int(tm["first_sample_number"]),
        "ttl_line": int(tm["ttl_line"]),
        "windows": {
            "response_ms": list(cfg.windows.response_ms),
            "baseline_ms": list(cfg.windows.baseline_ms),
        },
        "preprocessing": sorted_units.preprocessing,
        "class_names": list(CLASS_NAMES),
        "image_size": size,
        "normalisation": norm.as_dict(),
        "n_units": int(len(sorted_units.unit_ids)),
        "unit_ids": sorted_units.unit_ids.tolist(),
        "classifier": clf.description,
        "architecture": clf.architecture,
        "int8": int8.as_manifest(),
        "heldout_accuracy": acc,
        "calibration": {"fraction": cfg.calibration_fraction, "seed": cfg.seed, "n_trials": int(len(cal))},
        "versions": versions(),
    }
    files = {
        "templates.npz": npz_bytes(
            channel_positions=channel_positions,
            unit_ids=sorted_units.unit_ids,
            templates=sorted_units.templates,
            nbefore=np.array(sorted_units.nbefore),
            sparsity=sorted_units.sparsity,
            noise_levels=sorted_units.noise_levels,
        ),
        "baseline.npz": npz_bytes(
            unit_ids=sorted_units.unit_ids,
            mean=split.baseline.mean,
            std=split.baseline.std,
            fit_trials=split.baseline.fit_trials,
        ),
        "preferred_stimuli.npy": npy_bytes(split.ps.reshape(-1, size, size).astype(np.float32)),
        "model.onnx": onnx_path.read_bytes(),
        "model.pt": pt.read_bytes(),
        "report.json": json.dumps(report, indent=1).encode(),
    }
    if int8.path is not None:
        files["model.int8.onnx"] = int8.path.read_bytes()
    write_bundle(out, manifest, files, overwrite=overwrite)
    log(f"bundle written: {out}")
    return report
