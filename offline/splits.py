"""How trials are split into fit and scored sets -- splits a lab would believe.

- ``trial``: stratified random folds of trials (the paper's, and the default);
- ``image``: folds grouped by stimulus (the same scene or grating never in both training and test),
  so a classifier cannot score by recognising an image it was trained on;
- ``block``: folds of whole stimulus blocks (a natural-scene block and a grating block per fold), so
  training and test trials are minutes apart, as a decoder calibrated in one part of a session and
  used in another.

Stimulus blocks are the sessions' own ``stimulus_block`` numbers (Allen presentation tables and the
stimulus logs carry them); where a session has none, a new block begins wherever the family changes.
Within a family, blocks are ranked in time order; fold ``k`` of a block split holds the ``k``-th
block of each family.

Across animals the target's calibration split follows the same rule (:func:`calibration_split`):
random trials, whole images, or the first blocks of each family in time order.

:func:`first_minutes` is the learning curve a lab records: the trials in the first N minutes of the
calibration set, in recording order.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from rtdecode.errors import RtdecodeError

SPLITS = ("trial", "image", "block")


class SplitError(RtdecodeError, ValueError):
    """The session cannot be split that way (too few blocks or images of a class); says why."""


def stimulus_blocks(ds) -> np.ndarray:
    """Block index of every trial (0, 1, ... in time order): the session's ``stimulus_block`` where it
    has one, else runs of one family."""
    t = ds.trials.start_time.to_numpy(np.float64)
    order = np.argsort(t, kind="stable")
    if "stimulus_block" in ds.trials and ds.trials.stimulus_block.notna().all():
        key = ds.trials.stimulus_block.to_numpy(np.float64)[order]
    else:
        key = ds.trials.family.to_numpy()[order]
    new = np.ones(len(t), dtype=bool)
    new[1:] = key[1:] != key[:-1]
    blocks = np.empty(len(t), dtype=np.int64)
    blocks[order] = np.cumsum(new) - 1
    return blocks


def block_ranks(ds) -> tuple[np.ndarray, dict[int, int]]:
    """Each trial's block rank within its class (k-th natural block, k-th grating block) and the number
    of blocks per class."""
    blocks = stimulus_blocks(ds)
    ranks = np.empty(len(blocks), dtype=np.int64)
    counts = {}
    for cls in (0, 1):
        mine = ds.labels == cls
        ids = np.unique(blocks[mine])  # block ids are in time order
        counts[cls] = len(ids)
        ranks[mine] = np.searchsorted(ids, blocks[mine])
    return ranks, counts


def _need_blocks(counts: dict[int, int], need: int, what: str) -> None:
    if min(counts.values()) < need:
        raise SplitError(
            f"--split block {what} needs at least {need} stimulus blocks of each class; this session has "
            f"{counts[1]} natural-scene and {counts[0]} grating block(s) (simulate with --repeats 2 or more, or "
            "use --split trial or image)"
        )


def folds(ds, k: int, split: str = "trial", seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, test) index pairs over the animal's trials, every trial tested once."""
    x = np.zeros(ds.n_trials)
    if split == "trial":
        return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(x, ds.labels))
    if split == "image":
        per_class = [len(np.unique(ds.condition[ds.labels == c])) for c in (0, 1)]
        if min(per_class) < k:
            raise SplitError(f"--split image with {k} folds needs {k} distinct images of each class, got {per_class}")
        sgkf = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
        return list(sgkf.split(x, ds.labels, groups=ds.condition))
    if split == "block":
        ranks, counts = block_ranks(ds)
        _need_blocks(counts, 2, "within an animal")
        m = min(counts.values())
        group = ranks % m
        return [(np.flatnonzero(group != g), np.flatnonzero(group == g)) for g in range(min(k, m))]
    raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")


def calibration_split(ds, fraction: float, seed: int, split: str = "trial") -> tuple[np.ndarray, np.ndarray]:
    """(calibration, test) trials of a target animal: sorted and disjoint."""
    idx = np.arange(ds.n_trials)
    if split == "trial":
        cal, test = train_test_split(idx, train_size=fraction, stratify=ds.labels, random_state=seed)
    elif split == "image":
        rng = np.random.default_rng(seed)
        cal_mask = np.zeros(ds.n_trials, dtype=bool)
        for c in (0, 1):
            images = np.unique(ds.condition[ds.labels == c])
            if len(images) < 2:
                raise SplitError(f"--split image needs at least 2 distinct images of each class, got {len(images)}")
            n_cal = min(len(images) - 1, max(1, int(round(fraction * len(images)))))
            chosen = rng.choice(images, n_cal, replace=False)
            cal_mask |= (ds.labels == c) & np.isin(ds.condition, chosen)
        cal, test = idx[cal_mask], idx[~cal_mask]
    elif split == "block":
        ranks, counts = block_ranks(ds)
        _need_blocks(counts, 2, "across animals")
        cal_mask = np.zeros(ds.n_trials, dtype=bool)
        for c in (0, 1):
            n_cal = min(counts[c] - 1, max(1, int(round(fraction * counts[c]))))
            cal_mask |= (ds.labels == c) & (ranks < n_cal)
        cal, test = idx[cal_mask], idx[~cal_mask]
    else:
        raise ValueError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    return np.sort(cal), np.sort(test)


def first_minutes(ds, idx: np.ndarray, minutes: float) -> np.ndarray:
    """The trials of ``idx`` whose onset is within ``minutes`` of the first of them (recording order)."""
    idx = np.asarray(idx)
    t = ds.trials.start_time.to_numpy(np.float64)[idx]
    return np.sort(idx[t <= t.min() + 60.0 * minutes]) if len(idx) else idx
