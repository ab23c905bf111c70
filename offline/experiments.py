"""Leakage-free neural images for the paper's experiments, and the models scored on them.

The leakage rule (DESIGN section 2): a preferred stimulus built from a trial leaks that trial's
stimulus into its neural image. So for every split of trials into a fit set and a scored set:

- baseline statistics and ``PS`` are fit on the fit set only; scored images use that ``PS``;
- images of the fit set itself (what a classifier trains on) are *cross-fitted*: each is built
  with a ``PS`` fit on the other half of the fit set, so training images carry no leak either and
  look like the scored ones.

Every function records which trials fit what (``provenance``), and the report carries it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rtdecode.offline.dataset import AnimalDataset
from sklearn.model_selection import StratifiedKFold

from rtdecode.core.model_input import ImageNormalisation
from rtdecode.core.neural_image import neural_images, preferred_stimuli_from_conditions
from rtdecode.core.responses import BaselineStats
from rtdecode.core.stimuli import resize_images


@dataclass
class ImageSet:
    """Neural images of some trials of one animal, with what fit them."""

    trials: np.ndarray  # trial indices (rows of the dataset)
    images: np.ndarray  # (len(trials), pixels) float32
    ps_fit: list[np.ndarray]  # trial indices of the PS fit used for each image group
    groups: list[np.ndarray]  # image rows made with each PS in ps_fit
    baseline_fit: np.ndarray

    def provenance(self) -> list[dict]:
        return [
            {
                "images_of_trials": self.trials[g].tolist(),
                "ps_fit_trials": f.tolist(),
                "baseline_fit_trials": self.baseline_fit.tolist(),
            }
            for g, f in zip(self.groups, self.ps_fit, strict=True)
        ]


def _split_halves(idx: np.ndarray, labels: np.ndarray, seed: int, k: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit, apply) index pairs so every trial of ``idx`` is applied exactly once."""
    n_splits = min(k, int(np.bincount(labels[idx], minlength=2).min()) if len(idx) else 0)
    if n_splits < 2:
        raise ValueError(f"need at least 2 trials of each class to cross-fit, got {np.bincount(labels[idx])}")
    skf = StratifiedKFold(n_splits, shuffle=True, random_state=seed)
    return [(idx[a], idx[b]) for a, b in skf.split(idx, labels[idx])]


def crossfitted_images(
    R: np.ndarray, ds: AnimalDataset, idx: np.ndarray, baseline_fit: np.ndarray, seed: int
) -> ImageSet:
    """Images of trials ``idx``, each made with a PS fit on the other half of ``idx``."""
    images = np.empty((len(idx), ds.stack[0].size), dtype=np.float32)
    pos = {int(t): i for i, t in enumerate(idx)}
    ps_fit, groups = [], []
    for fit, apply in _split_halves(idx, ds.labels, seed):
        ps = preferred_stimuli_from_conditions(R[fit], ds.condition[fit], ds.stack)
        rows = np.array([pos[int(t)] for t in apply])
        images[rows] = neural_images(R[apply], ps)
        ps_fit.append(fit)
        groups.append(rows)
    return ImageSet(trials=idx, images=images, ps_fit=ps_fit, groups=groups, baseline_fit=baseline_fit)


def scored_images(R: np.ndarray, ds: AnimalDataset, fit: np.ndarray, scored: np.ndarray) -> tuple[ImageSet, np.ndarray]:
    """Images of ``scored`` trials with one PS fit on ``fit``; also returns that PS."""
    ps = preferred_stimuli_from_conditions(R[fit], ds.condition[fit], ds.stack)
    imgs = neural_images(R[scored], ps)
    return ImageSet(trials=scored, images=imgs, ps_fit=[fit], groups=[np.arange(len(scored))], baseline_fit=fit), ps


@dataclass
class SplitImages:
    """Everything a classifier needs for one (fit set -> scored set) split of one animal."""

    train: ImageSet
    test: ImageSet
    ps: np.ndarray  # PS used for the scored images (units x pixels)
    baseline: BaselineStats
    normalisation: ImageNormalisation  # fit on the cross-fitted training images


def split_images(
    ds: AnimalDataset, train_idx: np.ndarray, test_idx: np.ndarray, seed: int, shuffle_responses: bool = False
) -> SplitImages:
    """Leakage-free training and scored images for one split.

    ``shuffle_responses`` is the stimulus-only control: each trial gets the response of another
    trial (permuted within the training set and within the scored set), so any accuracy left
    comes from the stimuli in ``PS``, not from neural activity."""
    R, stats = ds.responses(train_idx)
    if shuffle_responses:
        rng = np.random.default_rng(seed + 7919)
        R = R.copy()
        for idx in (train_idx, test_idx):
            R[idx] = R[rng.permutation(idx)]
    train = crossfitted_images(R, ds, np.asarray(train_idx), np.asarray(train_idx), seed)
    test, ps = scored_images(R, ds, np.asarray(train_idx), np.asarray(test_idx))
    size = ds.stack.shape[-1]
    return SplitImages(
        train=train,
        test=test,
        ps=ps,
        baseline=stats,
        normalisation=ImageNormalisation.fit(train.images, size),
    )


def paper_protocol_images(ds: AnimalDataset) -> ImageSet:
    """The seed paper's protocol, leaky on purpose: baseline statistics and ``PS`` fit on *every*
    trial, test trials included, and each trial's image made with that one ``PS`` -- so a test
    trial's own stimulus is in the preferred stimuli that form its image. Only for setting beside
    the leakage-free numbers, to show how much that inflates them."""
    idx = np.arange(ds.n_trials)
    R, _ = ds.responses(idx)
    imgs, _ = scored_images(R, ds, idx, idx)
    return imgs


def temporal_images(ds: AnimalDataset, train_idx: np.ndarray, image_size: int) -> np.ndarray:
    """The paper's temporal spike image: units x time bins of counts, z-scored per unit with the
    training trials' statistics, resized to the model input. Returns (trials, size*size)."""
    x = ds.temporal_counts.astype(np.float32)
    mu = x[train_idx].mean(axis=(0, 2), keepdims=True)
    sd = x[train_idx].std(axis=(0, 2), keepdims=True) + 1e-3
    z = (x - mu) / sd
    return resize_images(z, (image_size, image_size)).reshape(len(z), -1)


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = correct / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return (float(centre - half), float(centre + half))


@dataclass
class Score:
    """Predictions of one model on scored trials, pooled over folds."""

    model: str
    correct: int = 0
    n: int = 0
    fold_accuracy: list[float] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)  # P(natural) per scored trial
    trials: list[int] = field(default_factory=list)

    def add(self, trials: np.ndarray, labels: np.ndarray, p_natural: np.ndarray) -> None:
        pred = (p_natural >= 0.5).astype(np.int64)
        self.correct += int((pred == labels).sum())
        self.n += len(labels)
        self.fold_accuracy.append(float((pred == labels).mean()) if len(labels) else float("nan"))
        self.probabilities.extend(map(float, p_natural))
        self.trials.extend(map(int, trials))

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    def as_dict(self) -> dict:
        lo, hi = wilson_interval(self.correct, self.n)
        return {
            "model": self.model,
            "accuracy": self.accuracy,
            "ci95": [lo, hi],
            "n_trials": self.n,
            "fold_accuracy": self.fold_accuracy,
        }
