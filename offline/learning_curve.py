"""How long to calibrate: accuracy against the number of a target animal's calibration trials.

Within an animal, the calibration trials are everything the decoder is fit on (baseline, preferred
stimuli, classifier): stratified subsets of the first fold's training trials, scored on that fold's
test trials. Across animals, the classifier is trained once on the other animals; the target's
calibration trials fit only its baseline and preferred stimuli: stratified subsets of its calibration
split, scored on the same held-out test trials. Every subset is leakage-free in the same way as the
main experiments (``experiments.split_images``). Each row also says how many minutes of recording
that many trials take at the session's median trial period.
"""

from __future__ import annotations

import numpy as np
from rtdecode.offline import model as gnet
from rtdecode.offline.dataset import AnimalDataset
from rtdecode.offline.experiments import Score, split_images
from sklearn.model_selection import train_test_split

#: Fractions of the available calibration trials on the curve.
FRACTIONS = (0.125, 0.25, 0.5, 1.0)
#: The smallest subset: enough of each class to cross-fit preferred stimuli.
MIN_TRIALS = 16


def curve_sizes(n_available: int) -> list[int]:
    sizes = sorted({int(round(f * n_available)) for f in FRACTIONS})
    return [n for n in sizes if n >= MIN_TRIALS] or [n_available]


def stratified_subset(idx: np.ndarray, labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    if n >= len(idx):
        return np.sort(idx)
    sub, _ = train_test_split(idx, train_size=n, stratify=labels[idx], random_state=seed)
    return np.sort(sub)


def trial_period_s(ds: AnimalDataset) -> float:
    """Median time from one trial's onset to the next (blank gaps between blocks do not count)."""
    t = np.sort(ds.trials.start_time.to_numpy(dtype=np.float64))
    return float(np.median(np.diff(t))) if len(t) > 1 else float("nan")


def _row(setting: str, n: int, score: Score, period_s: float, **where) -> dict:
    s = score.as_dict()
    return {
        "setting": setting,
        **where,
        "calibration_trials": n,
        "calibration_minutes": n * period_s / 60,
        "accuracy": s["accuracy"],
        "ci95": s["ci95"],
        "n_test": s["n_trials"],
    }


def within_curve(ds: AnimalDataset, ds_ref, train_idx, test_idx, cfg, clf, executor) -> list[dict]:
    sizes = curve_sizes(len(train_idx))
    subsets = [stratified_subset(np.asarray(train_idx), ds.labels, n, cfg.seed) for n in sizes]
    futures = [executor.submit(split_images, ds_ref, sub, test_idx, cfg.seed) for sub in subsets]
    period = trial_period_s(ds)
    rows = []
    for n, sub, fut in zip(sizes, subsets, futures, strict=True):
        split = fut.result()
        norm = split.normalisation
        x_tr, x_te = norm.to_model_input(split.train.images), norm.to_model_input(split.test.images)
        score = Score("googlenet")
        score.add(test_idx, ds.labels[test_idx], clf.fit_predict(x_tr, ds.labels[sub], x_te).p_natural)
        rows.append(_row("within", n, score, period, animal=ds.name))
    return rows


def across_curve(
    train: tuple[str, ...],
    target: AnimalDataset,
    target_ref,
    cal_idx: np.ndarray,
    test_idx: np.ndarray,
    x_train: np.ndarray,
    y_train: np.ndarray,
    cfg,
    clf,
    executor,
) -> list[dict]:
    model, _ = clf.fit(x_train, y_train)  # the other animals: trained once
    sizes = curve_sizes(len(cal_idx))
    subsets = [stratified_subset(np.asarray(cal_idx), target.labels, n, cfg.seed) for n in sizes]
    futures = [executor.submit(split_images, target_ref, sub, test_idx, cfg.seed) for sub in subsets]
    period = trial_period_s(target)
    rows = []
    for n, fut in zip(sizes, futures, strict=True):
        split = fut.result()
        x_te = split.normalisation.to_model_input(split.test.images)
        score = Score("googlenet")
        score.add(test_idx, target.labels[test_idx], gnet.predict_proba(model, x_te)[:, 1])
        rows.append(_row("across", n, score, period, train=list(train), target=target.name))
    return rows
