"""How long to calibrate: accuracy against the number of a target animal's calibration trials.

Within an animal, the calibration trials are everything the decoder is fit on (baseline, preferred
stimuli, classifier): subsets of the first fold's training trials, scored on that fold's test trials.
Across animals, the classifier is trained once on the other animals; the target's calibration trials
fit only its baseline and preferred stimuli: subsets of its calibration split, scored on the same
held-out test trials. Every subset is leakage-free in the same way as the main experiments
(``experiments.split_images``).

Two kinds of subset:

- ``random``: stratified random subsets of 1/8, 1/4, 1/2 and all calibration trials;
- ``first_minutes``: the calibration trials recorded in the first 1/8, 1/4, 1/2 and all of the
  calibration period, in recording order -- how a lab calibrates. Stimulus blocks hold one family
  each, so early on only one class may have been shown: such a row says so (``accuracy`` None, and
  the reason) instead of scoring a classifier that has seen one class.

Each row says how many minutes of recording its trials took at the session's median trial period,
and the scale of its training and scored images (``image_scale``).
"""

from __future__ import annotations

import numpy as np
from rtdecode.offline import model as gnet
from rtdecode.offline.dataset import AnimalDataset
from rtdecode.offline.experiments import split_images
from rtdecode.offline.splits import first_minutes
from rtdecode.offline.statistics import Score
from sklearn.model_selection import train_test_split

#: Fractions of the available calibration trials (or of the calibration period) on the curve.
FRACTIONS = (0.125, 0.25, 0.5, 1.0)
#: The smallest subset: enough trials to fit a baseline and cross-fit preferred stimuli.
MIN_TRIALS = 16
#: Trials of each class a subset needs before a classifier is scored on it.
MIN_PER_CLASS = 4


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


def subsets(ds: AnimalDataset, idx: np.ndarray, seed: int) -> list[tuple[str, np.ndarray, float | None]]:
    """(kind, trials, minutes of the calibration period they span) for both kinds of subset."""
    out = [("random", stratified_subset(idx, ds.labels, n, seed), None) for n in curve_sizes(len(idx))]
    t = ds.trials.start_time.to_numpy(np.float64)[idx]
    span_min = (t.max() - t.min()) / 60 if len(t) else 0.0
    for f in FRACTIONS:
        out.append(("first_minutes", first_minutes(ds, idx, f * span_min + 1e-9), f * span_min))
    return out


def _why_not(ds: AnimalDataset, sub: np.ndarray) -> str | None:
    per_class = np.bincount(ds.labels[sub], minlength=2)
    if len(sub) < MIN_TRIALS or per_class.min() < MIN_PER_CLASS:
        return (
            f"{per_class[1]} natural and {per_class[0]} artificial trials so far: a classifier needs at least "
            f"{MIN_PER_CLASS} of each (and {MIN_TRIALS} trials)"
        )
    return None


def _row(setting: str, kind: str, ds: AnimalDataset, sub, score: Score | None, minutes, scale, why, **where) -> dict:
    s = score.as_dict() if score is not None else None
    period = trial_period_s(ds)
    return {
        "setting": setting,
        **where,
        "subset": kind,
        "calibration_trials": int(len(sub)),
        "calibration_natural": int(ds.labels[sub].sum()),
        "calibration_minutes": float(minutes) if minutes is not None else len(sub) * period / 60,
        "accuracy": s["accuracy"] if s else None,
        "balanced_accuracy": s["balanced_accuracy"] if s else None,
        "ci95": s["ci95"] if s else None,
        "n_test": s["n_trials"] if s else None,
        "image_scale": scale,
        "not_scored": why,
    }


def within_curve(ds: AnimalDataset, ds_ref, train_idx, test_idx, cfg, clf, executor) -> list[dict]:
    train_idx = np.asarray(train_idx)
    subs = subsets(ds, train_idx, cfg.seed)
    futures = [
        None if _why_not(ds, sub) else executor.submit(split_images, ds_ref, sub, test_idx, cfg.seed)
        for _, sub, _ in subs
    ]
    rows = []
    for (kind, sub, minutes), fut in zip(subs, futures, strict=True):
        if fut is None:
            rows.append(_row("within", kind, ds, sub, None, minutes, None, _why_not(ds, sub), animal=ds.name))
            continue
        split = fut.result()
        norm = split.normalisation
        x_tr, x_te = norm.to_model_input(split.train.images), norm.to_model_input(split.test.images)
        score = Score(clf.key)
        score.add(test_idx, ds.labels[test_idx], clf.fit_predict(x_tr, ds.labels[sub], x_te).p_natural)
        rows.append(_row("within", kind, ds, sub, score, minutes, split.scale, None, animal=ds.name))
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
    subs = subsets(target, np.asarray(cal_idx), cfg.seed)
    where = {"train": list(train), "target": target.name}
    rows = []
    for kind, sub, minutes in subs:
        per_class = np.bincount(target.labels[sub], minlength=2)
        if len(sub) < MIN_TRIALS or per_class.min() < 2:  # PS and baseline only: 2 per class suffice
            why = f"{per_class[1]} natural and {per_class[0]} artificial calibration trials: too few to fit PS"
            rows.append(_row("across", kind, target, sub, None, minutes, None, why, **where))
            continue
        split = executor.submit(split_images, target_ref, sub, test_idx, cfg.seed).result()
        x_te = split.normalisation.to_model_input(split.test.images)
        score = Score(clf.key)
        score.add(test_idx, target.labels[test_idx], gnet.predict_proba(model, x_te)[:, 1])
        rows.append(_row("across", kind, target, sub, score, minutes, split.scale, None, **where))
    return rows
