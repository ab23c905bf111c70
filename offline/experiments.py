"""Leakage-free neural images for the paper's experiments, and the models scored on them.

The leakage rule (DESIGN section 2): a preferred stimulus built from a trial leaks that trial's
stimulus into its neural image. So for every split of trials into a fit set and a scored set:

- baseline statistics and ``PS`` are fit on the fit set only; scored images use that ``PS``;
- images of the fit set itself (what a classifier trains on) are *cross-fitted*: each is built
  with a ``PS`` fit on all the other trials of the fit set (leave one out), so training images carry
  no leak either and are on the scale of the scored ones (``PS`` is a mean over its fit trials;
  ``image_scale`` reports the std ratio).

Every function records which trials fit what (``provenance``), and the report carries it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rtdecode.offline.dataset import AnimalDataset
from rtdecode.offline.statistics import Score, wilson_interval  # noqa: F401  (re-exported: used by the demo)

from rtdecode.core.model_input import ImageNormalisation
from rtdecode.core.neural_image import (
    condition_sums,
    leave_one_out_images,
    neural_images,
    preferred_stimuli_from_conditions,
)
from rtdecode.core.responses import BaselineStats
from rtdecode.core.stimuli import resize_images


@dataclass
class ImageSet:
    """Neural images of some trials of one animal, with what fit them.

    ``leave_one_out``: each image ``k`` was made with the ``PS`` of ``ps_fit[0]`` minus its own trial
    (cross-fitted training images); otherwise every image of group ``g`` used the ``PS`` of ``ps_fit[g]``."""

    trials: np.ndarray  # trial indices (rows of the dataset)
    images: np.ndarray  # (len(trials), pixels) float32
    ps_fit: list[np.ndarray]  # trial indices of the PS fit used for each image group
    groups: list[np.ndarray]  # image rows made with each PS in ps_fit
    baseline_fit: np.ndarray
    leave_one_out: bool = False

    def provenance(self) -> list[dict]:
        return [
            {
                "images_of_trials": self.trials[g].tolist(),
                "ps_fit_trials": f.tolist(),
                "ps_fit_excludes_own_trial": self.leave_one_out,
                "baseline_fit_trials": self.baseline_fit.tolist(),
            }
            for g, f in zip(self.groups, self.ps_fit, strict=True)
        ]


def crossfitted_images(R: np.ndarray, ds: AnimalDataset, idx: np.ndarray, baseline_fit: np.ndarray) -> ImageSet:
    """Images of trials ``idx``, each made with the PS of the other trials of ``idx`` (leave one out):
    no image carries its own stimulus, and all are on the scale of images scored with the PS of all
    of ``idx`` (``rtdecode.core.neural_image.leave_one_out_images``)."""
    idx = np.asarray(idx)
    images = leave_one_out_images(R[idx], ds.condition[idx], ds.stack)
    return ImageSet(
        trials=idx,
        images=images,
        ps_fit=[idx],
        groups=[np.arange(len(idx))],
        baseline_fit=np.asarray(baseline_fit),
        leave_one_out=True,
    )


def scored_images(R: np.ndarray, ds: AnimalDataset, fit: np.ndarray, scored: np.ndarray) -> tuple[ImageSet, np.ndarray]:
    """Images of ``scored`` trials with one PS fit on ``fit``; also returns that PS."""
    ps = preferred_stimuli_from_conditions(R[fit], ds.condition[fit], ds.stack)
    imgs = neural_images(R[scored], ps)
    return ImageSet(trials=scored, images=imgs, ps_fit=[fit], groups=[np.arange(len(scored))], baseline_fit=fit), ps


def image_scale(train_images: np.ndarray, scored_images: np.ndarray) -> dict:
    """The std of the images a classifier trains on and of those it scores, and their ratio
    (scored / training): 1 when both are on one scale (DESIGN section 2, "One scale")."""
    a, b = float(np.std(train_images)), float(np.std(scored_images))
    return {"train_std": a, "scored_std": b, "ratio": b / a if a > 0 else float("nan")}


@dataclass
class SplitImages:
    """Everything a classifier needs for one (fit set -> scored set) split of one animal."""

    train: ImageSet
    test: ImageSet
    ps: np.ndarray  # PS used for the scored images (units x pixels)
    baseline: BaselineStats
    normalisation: ImageNormalisation  # fit on the cross-fitted training images

    @property
    def scale(self) -> dict:
        return image_scale(self.train.images, self.test.images)


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
    train = crossfitted_images(R, ds, np.asarray(train_idx), np.asarray(train_idx))
    test, ps = scored_images(R, ds, np.asarray(train_idx), np.asarray(test_idx))
    size = ds.stack.shape[-1]
    return SplitImages(
        train=train,
        test=test,
        ps=ps,
        baseline=stats,
        normalisation=ImageNormalisation.fit(train.images, size),
    )


def paper_protocol_images(ds: AnimalDataset, shuffle_responses: bool = False, seed: int = 0) -> ImageSet:
    """The seed paper's protocol, leaky on purpose: baseline statistics and ``PS`` fit on *every*
    trial, test trials included, and each trial's image made with that one ``PS`` -- so a test
    trial's own stimulus is in the preferred stimuli that form its image. Only for setting beside
    the leakage-free numbers, to show how much that inflates them.

    ``shuffle_responses`` is the stimulus-only control under this protocol: every trial gets another
    trial's response, so nothing neural is left -- but a trial's image still holds its own stimulus,
    weighted by ``|R|^2``, through the ``PS`` it helped fit, so the control detects the leak."""
    idx = np.arange(ds.n_trials)
    R, _ = ds.responses(idx)
    if shuffle_responses:
        R = R[np.random.default_rng(seed + 7919).permutation(idx)]
    imgs, _ = scored_images(R, ds, idx, idx)
    return imgs


def self_term_images(ds: AnimalDataset, fit: np.ndarray, scored: np.ndarray, min_std_hz: float | None = None):
    """Images of ``scored`` trials that differ from the leakage-free ones *only* by letting each scored
    trial into its own fit: trial ``t``'s baseline statistics and ``PS`` are fit on ``fit`` plus ``t``.

    This isolates the leak (the self-term ``|R_t|^2 S_t / (n + 1)`` and the trial's own baseline) from
    everything else the paper's protocol changes (more fit trials, training images that are not
    cross-fitted). With raw rates ``r``, baseline rates ``b``, ``A = sum_fit r S`` and ``B = sum_fit S``,
    trial ``t``'s statistics ``m'_t, s'_t`` (fit plus ``t``, in closed form from the fit set's sums) give
    ``R'_t = (r_t - m'_t) / s'_t`` and, with ``w_t = R'_t / ((n + 1) s'_t)``::

        I_t = w_t A - (w_t . m'_t) B + (w_t . (r_t - m'_t)) S_t

    -- one GEMM for all scored trials. Returns (scored trials, pixels) float32."""
    from rtdecode.parameters import default

    min_std = default("build.min_baseline_std_hz") if min_std_hz is None else min_std_hz
    fit, scored = np.asarray(fit), np.asarray(scored)
    n = len(fit)
    b = ds.baseline_rates.astype(np.float64)
    s1, s2 = b[fit].sum(0), (b[fit] ** 2).sum(0)
    bt = b[scored]
    mean = (s1 + bt) / (n + 1)
    var = ((s2 + bt**2) - (s1 + bt) ** 2 / (n + 1)) / n  # ddof = 1 over n + 1 trials, as BaselineStats
    std = np.maximum(np.sqrt(np.maximum(var, 0)), min_std)
    r = ds.response_rates.astype(np.float64)
    stack = ds.stack.reshape(len(ds.stack), -1).astype(np.float64)
    counts = np.bincount(ds.condition[fit], minlength=len(stack)).astype(np.float64)
    A = condition_sums(r[fit], ds.condition[fit], len(stack)).astype(np.float64).T @ stack  # units x pixels
    B = counts @ stack
    rt = r[scored]
    w = (rt - mean) / std / ((n + 1) * std)
    images = (
        w @ A
        - (w * mean).sum(1)[:, None] * B[None, :]
        + (w * (rt - mean)).sum(1)[:, None] * stack[ds.condition[scored]]
    )
    return images.astype(np.float32)


def temporal_images(ds: AnimalDataset, train_idx: np.ndarray, image_size: int) -> np.ndarray:
    """The paper's temporal spike image: units x time bins of counts, z-scored per unit with the
    training trials' statistics, resized to the model input. Returns (trials, size*size)."""
    x = ds.temporal_counts.astype(np.float32)
    mu = x[train_idx].mean(axis=(0, 2), keepdims=True)
    sd = x[train_idx].std(axis=(0, 2), keepdims=True) + 1e-3
    z = (x - mu) / sd
    return resize_images(z, (image_size, image_size)).reshape(len(z), -1)
