"""``rtdecode build``: a target animal's labelled calibration session -> a decoder bundle.

The lab's workflow: record a calibration session from the animal on the rig (stimuli with labels),
build its decoder, then decode that animal's next sessions live.

1. The calibration recording is sorted (Kilosort 4, or the simulator's ground truth) and templates
   are estimated on the daemon's preprocessing.
2. The bundle's own online pipeline (those templates, its preprocessing and matcher) runs over the
   calibration recording twice: first to record where the detected peaks lie along the shank (the
   motion tracker's reference, registered over the calibration's own motion, kept in
   ``templates.npz``), then tracking against it as the daemon will: the calibration responses are
   counted from the spikes the daemon will see (``--spikes online``, the default; ``--spikes
   sorter`` counts the sorter's spikes instead). The build report shows the held-out accuracy of
   both.
3. Baseline statistics and ``PS`` are fit on every calibration trial; the classifier trains on the
   calibration trials' cross-fitted (leave-one-out) neural images -- plus, with ``--train``, other
   animals' images as extra training data, each normalised on its own.
4. A k-fold cross-validation over the calibration trials (baseline, ``PS``, normalisation and
   classifier refit per fold) gives the held-out accuracy and the out-of-fold logits on which the
   probability calibration (temperature scaling) is fit: the bundle's p(natural) means what it says.
5. ONNX export (static 1x3xSxS) with a parity check against torch on held-out inputs; the INT8 model
   when its decisions agree with fp32's.
6. The bundle is written atomically with a sha256 manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rtdecode.offline import model as gnet
from rtdecode.offline.classifiers import LinearImageClassifier, NetworkClassifier
from rtdecode.offline.dataset import (
    AnimalDataset,
    Windows,
    dataset_from_spikes,
    load_natural_scenes,
    trials_from_stimulus_log,
)
from rtdecode.offline.evaluate import _full_crossfit, versions
from rtdecode.offline.experiments import crossfitted_images, image_scale, split_images
from rtdecode.offline.export import check_parity, export_onnx, quantize_int8
from rtdecode.offline.own_spikes import online_spike_trains
from rtdecode.offline.sort import compare_trains_to_ground_truth, sort_recording
from rtdecode.offline.statistics import (
    Score,
    apply_temperature,
    brier,
    fit_temperature,
    reliability,
)
from sklearn.model_selection import StratifiedKFold

from rtdecode.bundle import CLASS_NAMES, BundleContents
from rtdecode.config import SortingConfig
from rtdecode.core.model_input import ImageNormalisation
from rtdecode.core.neural_image import preferred_stimuli_from_conditions
from rtdecode.core.responses import BaselineStats
from rtdecode.manifest import ManifestContent, Preprocessing
from rtdecode.sorting.templates import Templates

SPIKES = ("online", "sorter")
DECODERS = ("network", "linear", "auto")


@dataclass
class BuildConfig:
    templates: str = "ground-truth"
    image_size: int = 224
    mode: str = "head"
    epochs: int = 10
    weights: str | None = None
    seed: int = 0
    windows: Windows = Windows()
    decoder: str = "network"  # "linear": the linear read-out of neural images; "auto": the better of the two
    # on the calibration session's held-out folds
    backbone: str = "googlenet"  # or "efficientnet-lite0"
    spikes: str = "online"  # whose spikes calibrate: the bundle's own online matcher's, or the sorter's
    folds: int = 5  # cross-validation folds of the held-out estimate and the probability calibration

    def validate(self) -> None:
        from rtdecode.offline.backbones import BACKBONES

        if self.decoder not in DECODERS:
            raise ValueError(f"decoder {self.decoder!r}: expected one of {', '.join(DECODERS)}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone {self.backbone!r}: expected one of {', '.join(BACKBONES)}")
        if self.spikes not in SPIKES:
            raise ValueError(f"spikes {self.spikes!r}: expected one of {', '.join(SPIKES)}")
        if self.folds < 2:
            raise ValueError(f"folds = {self.folds}: expected at least 2")


def target_dataset(
    animal_dir: Path, trains: list[np.ndarray], unit_ids: np.ndarray, image_size: int, windows: Windows
) -> AnimalDataset:
    """The target's trials (stimulus log) with responses counted from ``trains``."""
    m = json.loads((animal_dir / "animal.json").read_text())
    trials = trials_from_stimulus_log(animal_dir / m["stimulus_log"], m["first_sample_number"], m["sample_rate"])
    scenes = load_natural_scenes(animal_dir / m["stimuli"])
    return dataset_from_spikes(
        m["name"], trains, unit_ids, trials, m["sample_rate"], scenes, image_size, windows, {"folder": str(animal_dir)}
    )


def make_classifier(cfg: BuildConfig, decoder: str | None = None):
    if (decoder or cfg.decoder) == "linear":
        return LinearImageClassifier(cfg.image_size, seed=cfg.seed)
    return NetworkClassifier(
        cfg.weights if cfg.backbone == "googlenet" else None,
        cfg.mode,
        finetune_epochs=cfg.epochs,
        seed=cfg.seed,
        image_size=cfg.image_size,
        backbone=cfg.backbone,
    )


@dataclass
class CrossValidation:
    """Out-of-fold predictions over the calibration trials."""

    score: Score
    logits: np.ndarray  # (trials, 2), in calibration-trial order
    inputs: np.ndarray  # (trials, 3, S, S) held-out network inputs, each normalised as its fold
    scale: list[dict]


def cross_validate(target: AnimalDataset, extra: tuple[np.ndarray, np.ndarray] | None, clf, folds: int, seed: int):
    """k-fold over the target's calibration trials: baseline, PS, normalisation and classifier refit on
    each fold's training trials (plus the extra animals' images), scored on the held-out fold."""
    n = target.n_trials
    logits = np.zeros((n, 2), dtype=np.float32)
    inputs = np.zeros((n, 3, target.stack.shape[-1], target.stack.shape[-1]), dtype=np.float32)
    score = Score("held-out")
    scale = []
    skf = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for k, (tr, te) in enumerate(skf.split(np.zeros(n), target.labels)):
        split = split_images(target, tr, te, seed + k)
        norm = split.normalisation
        x_tr, x_te = norm.to_model_input(split.train.images), norm.to_model_input(split.test.images)
        y_tr = target.labels[tr]
        if extra is not None:
            x_tr, y_tr = np.concatenate([x_tr, extra[0]]), np.concatenate([y_tr, extra[1]])
        model, _ = clf.fit(x_tr, y_tr)
        logits[te] = gnet.predict_logits(model, x_te)
        inputs[te] = x_te
        score.add(te, target.labels[te], apply_temperature(logits[te], 1.0), k)
        scale.append({"split": f"calibration fold {k}", **split.scale})
    return CrossValidation(score, logits, inputs, scale)


def figure_calibration(p_raw, p_cal, labels, temperature: float, path: Path) -> None:
    """Reliability diagram of the held-out p(natural) before and after temperature scaling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], color="k", ls=":", lw=0.8, label="perfectly calibrated")
    for p, name in ((p_raw, "network output"), (p_cal, f"temperature {temperature:.2f}")):
        r = reliability(p, labels)
        pts = [(a, b) for a, b in zip(r["mean_predicted"], r["observed"], strict=True) if a is not None]
        ax.plot(*zip(*pts, strict=True), marker="o", lw=1, label=f"{name}: Brier {brier(p, labels):.3f}")
    ax.set_xlabel("predicted p(natural), held-out calibration trials")
    ax.set_ylabel("observed share natural")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    cfg.validate()
    target_dir = Path(target_dir)
    tm = json.loads((target_dir / "animal.json").read_text())
    if tm["name"] in {d.name for d in train}:
        raise ValueError(
            f"the target {tm['name']} is also a --train session: its calibration trials are already the "
            "training data; give other sessions with --train"
        )
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    log(f"sorting {tm['name']}'s calibration recording ({cfg.templates}) ...")
    sorted_units = sort_recording(target_dir, cfg.templates, work_dir, progress=progress)
    if sorted_units.accuracy:
        log(
            f"  {len(sorted_units.unit_ids)} units; mean accuracy vs ground truth "
            f"{sorted_units.accuracy['mean_accuracy']:.2f}"
        )
    from probeinterface import read_probeinterface

    channel_positions = read_probeinterface(target_dir / tm.get("probe", "probe.json")).probes[0].contact_positions
    templates = Templates.of(sorted_units, channel_positions)
    sorting_cfg = SortingConfig()  # the daemon's defaults, on the preprocessing the templates were made on
    preprocessing = Preprocessing.model_validate(sorted_units.preprocessing)
    if sorting_cfg.motion_tracking:
        # the motion tracker's reference first: where the calibration's detected peaks lie along the
        # shank, registered over its own motion; the online pass below then tracks against it, as the
        # daemon will (a reference predicted from the templates misleads the tracker on short probes)
        log("recording where the calibration's peaks lie along the shank (the motion tracker's reference) ...")
        depth_profile = online_spike_trains(
            target_dir / tm["recording"], templates, sorting_cfg, preprocessing, seed=cfg.seed, progress=progress,
            fixed_templates=True,
        ).depth_profile  # fmt: skip
        if depth_profile is not None:
            templates = replace(templates, depth_profile=depth_profile)
            shifts = depth_profile.shifts_um
            log(
                f"  {depth_profile.peaks.sum():.0f} peaks; the calibration itself moved {shifts.min():+.0f} to "
                f"{shifts.max():+.0f} um about its average position (the tracker's zero)"
            )
    log("running the bundle's own online pipeline over the calibration recording ...")
    trains, n_spikes, _ = online_spike_trains(
        target_dir / tm["recording"], templates, sorting_cfg, preprocessing, seed=cfg.seed, progress=progress
    )
    online_vs_truth = compare_trains_to_ground_truth(target_dir, trains, templates.unit_ids, float(tm["sample_rate"]))
    log(
        f"  {n_spikes} spikes"
        + (f"; mean accuracy vs ground truth {online_vs_truth['mean_accuracy']:.2f}" if online_vs_truth else "")
    )
    datasets = {
        "online": target_dataset(target_dir, trains, templates.unit_ids, cfg.image_size, cfg.windows),
        "sorter": target_dataset(target_dir, sorted_units.trains, templates.unit_ids, cfg.image_size, cfg.windows),
    }
    target = datasets[cfg.spikes]

    extra = None
    if train:
        parts = [executor.submit(_full_crossfit, train_refs[d.name], cfg.seed).result() for d in train]
        extra = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        log(f"extra training data: {len(extra[1])} neural images from {', '.join(d.name for d in train)}")

    log(f"{cfg.folds}-fold cross-validation over {target.n_trials} calibration trials ...")
    candidates = {}
    for decoder in ("network", "linear") if cfg.decoder == "auto" else (cfg.decoder,):
        clf = make_classifier(cfg, decoder)
        candidates[decoder] = (clf, cross_validate(target, extra, clf, cfg.folds, cfg.seed))
        log(f"  {clf.description}: held-out accuracy {candidates[decoder][1].score.accuracy:.1%}")
    chosen = max(candidates, key=lambda d: candidates[d][1].score.accuracy)
    clf, cv = candidates[chosen]
    if cfg.decoder == "auto":
        log(f"decoder: {chosen} (the better on the calibration session's held-out folds)")
    other = "sorter" if cfg.spikes == "online" else "online"
    cvs = {cfg.spikes: cv, other: cross_validate(datasets[other], extra, clf, cfg.folds, cfg.seed)}
    temperature = fit_temperature(cv.logits, target.labels)
    p_raw = apply_temperature(cv.logits, 1.0)
    p_cal = apply_temperature(cv.logits, temperature)
    held = cv.score.as_dict()
    log(
        f"held-out accuracy {held['accuracy']:.1%} [{held['ci95'][0]:.1%}, {held['ci95'][1]:.1%}] "
        f"({cfg.spikes} spikes; with the sorter's spikes {cvs['sorter'].score.accuracy:.1%}, with the online "
        f"matcher's {cvs['online'].score.accuracy:.1%})"
    )
    log(
        f"probability calibration: temperature {temperature:.2f}, Brier {brier(p_raw, target.labels):.3f} -> "
        f"{brier(p_cal, target.labels):.3f}"
    )

    # The bundle itself: everything fit on every calibration trial.
    idx = np.arange(target.n_trials)
    R, stats = target.responses(idx)
    train_images = crossfitted_images(R, target, idx, idx).images
    ps = preferred_stimuli_from_conditions(R, target.condition, target.stack)
    norm = ImageNormalisation.fit(train_images, cfg.image_size)
    x_train, y_train = norm.to_model_input(train_images), target.labels
    if extra is not None:
        x_train, y_train = np.concatenate([x_train, extra[0]]), np.concatenate([y_train, extra[1]])
    log(f"training on {len(y_train)} neural images ...")
    model, curve = clf.fit(x_train, y_train)

    onnx_path = export_onnx(model, work_dir / "model.onnx", cfg.image_size)
    heldout_inputs = cv.inputs
    parity = check_parity(model, onnx_path, heldout_inputs[: min(32, len(heldout_inputs))])
    log(f"ONNX parity: max |torch - onnxruntime| = {parity.max_abs_diff:.1e} on {parity.n_inputs} held-out inputs")
    rng = np.random.default_rng(cfg.seed)
    calib = x_train[np.sort(rng.choice(len(x_train), min(64, len(x_train)), replace=False))]
    int8 = quantize_int8(onnx_path, work_dir / "model.int8.onnx", calib, heldout_inputs)
    log(
        f"INT8 model: decisions agree with fp32 on {int8.agreement:.1%} of {int8.n_heldout} held-out inputs"
        + ("" if int8.path else f" -- not included: {int8.reason}")
    )
    import torch

    pt = work_dir / "model.pt"
    torch.save(model.state_dict(), pt)
    figure_calibration(p_raw, p_cal, target.labels, temperature, work_dir / "calibration.png")

    size = cfg.image_size
    report = {
        "target": tm["name"],
        "workflow": "trained on the target's own labelled calibration session"
        + (f", plus {', '.join(d.name for d in train)} as extra training data" if train else ""),
        "train_sessions": [d.name for d in train],
        "classifier": clf.description,
        "architecture": clf.architecture,
        "pretrained_weights": clf.pretrained,
        "training_curve": curve,
        "n_training_images": int(len(y_train)),
        "calibration_trials": idx.tolist(),
        "spikes": cfg.spikes,
        "decoder": chosen,
        "decoder_candidates": {
            d: {"classifier": c.description, **{k: v.score.as_dict()[k] for k in ("accuracy", "ci95", "n_trials")}}
            for d, (c, v) in candidates.items()
        },
        "heldout": {
            "method": f"{cfg.folds}-fold cross-validation over the calibration trials (everything refit per fold)",
            **held,
            "p_natural_raw": p_raw.tolist(),
            "p_natural_calibrated": p_cal.tolist(),
            "labels": target.labels.tolist(),
        },
        "heldout_by_spikes": {
            name: {k: c.score.as_dict()[k] for k in ("accuracy", "ci95", "balanced_accuracy", "n_trials")}
            for name, c in cvs.items()
        },
        "probability_calibration": {
            "method": "temperature",
            "temperature": temperature,
            "brier_before": brier(p_raw, target.labels),
            "brier_after": brier(p_cal, target.labels),
            "reliability_before": reliability(p_raw, target.labels),
            "reliability_after": reliability(p_cal, target.labels),
        },
        "image_scale": cv.scale,
        "training_image_std": float(np.std(train_images)),
        "onnx_parity": parity.as_dict(),
        "int8": int8.as_manifest(),
        "sorting": {
            "method": sorted_units.method,
            "n_units": int(len(sorted_units.unit_ids)),
            "accuracy_vs_ground_truth": sorted_units.accuracy,
            "online_matcher_vs_ground_truth": online_vs_truth,
            "online_spikes": n_spikes,
            "preprocessing": sorted_units.preprocessing,
        },
        "versions": versions(),
    }
    manifest = ManifestContent(
        target=tm["name"],
        train_sessions=[d.source.get("folder") or d.source.get("nwb") for d in train],
        templates_method=cfg.templates,
        sample_rate=float(tm["sample_rate"]),
        channel_count=int(tm["channels"]),
        stream_name=tm.get("stream_name"),
        channel_map=list(range(int(tm["channels"]))),
        probe=tm.get("probe"),
        first_sample_number=int(tm["first_sample_number"]),
        ttl_line=int(tm["ttl_line"]),
        windows={"response_ms": list(cfg.windows.response_ms), "baseline_ms": list(cfg.windows.baseline_ms)},
        preprocessing=sorted_units.preprocessing,
        class_names=list(CLASS_NAMES),
        image_size=size,
        normalisation=norm.as_dict(),
        n_units=int(templates.n_units),
        unit_ids=templates.unit_ids.tolist(),
        classifier=clf.description,
        architecture=clf.architecture,
        int8=int8.as_manifest(),
        heldout_accuracy=held["accuracy"],
        calibration={
            "fraction": 1.0,
            "seed": cfg.seed,
            "n_trials": int(target.n_trials),
            "folds": cfg.folds,
            "spikes": cfg.spikes,
        },
        probability={
            "method": "temperature",
            "temperature": temperature,
            "n_trials": int(target.n_trials),
            "brier_before": brier(p_raw, target.labels),
            "brier_after": brier(p_cal, target.labels),
        },
        versions=versions(),
    )
    contents = BundleContents(
        manifest=manifest,
        templates=templates,
        baseline=BaselineStats(mean=stats.mean, std=stats.std, fit_trials=idx),
        preferred_stimuli=ps.reshape(-1, size, size).astype(np.float32),
        model_onnx=onnx_path,
        model_pt=pt,
        report=report,
        model_int8_onnx=int8.path,
        figures={"calibration.png": (work_dir / "calibration.png").read_bytes()},
    )
    contents.write(out, overwrite=overwrite)
    log(f"bundle written: {out}")
    return report


__all__ = ["BuildConfig", "build_bundle", "image_scale"]
