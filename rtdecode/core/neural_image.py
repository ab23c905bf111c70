"""Preferred stimuli and neural images (DESIGN section 2), as float32 GEMMs.

With ``R`` (trials x units) and ``S`` (trials x pixels):

- ``PS = R_fit^T S_fit / n_fit`` (units x pixels), fit on the fit/training trials only;
- ``I = R PS`` (trials x pixels).

**One scale.** The paper's ``PS`` is a sum over its fit trials, so an image's size grows with the
number of trials that fit it, and a network trained on images from one fit set sees inputs of
another size at test time. Here ``PS`` is the *mean* over its fit trials (DESIGN section 2, "One
scale"): images made from fit sets of any size are on one scale. The images a classifier trains
on are made by :func:`leave_one_out_images` -- each fit trial's image with the ``PS`` of all the
other fit trials -- so they carry no leak of their own stimulus and their noise level matches that
of images scored with the ``PS`` of the whole fit set (``n - 1`` against ``n`` trials).

Stimuli in an experiment come from a small set of conditions (118 scenes, 120 gratings, gray),
so ``S = onehot(condition) @ stack`` and ``R^T S = (onehot^T R)^T stack``: summing ``R`` per
condition first turns a (units x trials) x (trials x pixels) product into a
(units x conditions) x (conditions x pixels) one -- exactly equal, ~50x less work at Allen
size. Both paths are here; they agree to float32 rounding (tested).

Memory is bounded by chunking: over pixels for ``PS`` and over trials for ``I``; ``out=`` lets a
caller (the daemon) write into a preallocated buffer.
"""

from __future__ import annotations

import numpy as np


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.reshape(len(x), -1)


def preferred_stimuli(R_fit: np.ndarray, S_fit: np.ndarray, chunk_pixels: int = 65536) -> np.ndarray:
    """``PS = R_fit^T S_fit / n_fit`` (units x pixels, float32); ``S_fit`` may be (trials, H, W)."""
    out = preferred_stimulus_sums(R_fit, S_fit, chunk_pixels)
    out *= np.float32(1.0 / max(np.shape(R_fit)[0], 1))
    return out


def preferred_stimulus_sums(R_fit: np.ndarray, S_fit: np.ndarray, chunk_pixels: int = 65536) -> np.ndarray:
    """The paper's sum ``R_fit^T S_fit`` (units x pixels, float32), without dividing by the trials."""
    R = np.asarray(R_fit, dtype=np.float32)
    S = _as_2d(S_fit)
    if S.shape[0] != R.shape[0]:
        raise ValueError(f"R has {R.shape[0]} trials, S has {S.shape[0]}")
    out = np.empty((R.shape[1], S.shape[1]), dtype=np.float32)
    Rt = np.ascontiguousarray(R.T)
    for p0 in range(0, S.shape[1], chunk_pixels):
        p1 = min(S.shape[1], p0 + chunk_pixels)
        np.matmul(Rt, S[:, p0:p1].astype(np.float32, copy=False), out=out[:, p0:p1])
    return out


def condition_sums(R: np.ndarray, condition: np.ndarray, n_conditions: int) -> np.ndarray:
    """``onehot(condition)^T R``: per-condition sums of the rows of ``R`` (conditions x units)."""
    R = np.asarray(R, dtype=np.float32)
    condition = np.asarray(condition, dtype=np.int64)
    if condition.shape[0] != R.shape[0]:
        raise ValueError(f"R has {R.shape[0]} trials, condition has {condition.shape[0]}")
    if condition.size and (condition.min() < 0 or condition.max() >= n_conditions):
        raise ValueError(f"condition indices must be in [0, {n_conditions}), got {condition.min()}..{condition.max()}")
    A = np.zeros((n_conditions, R.shape[1]), dtype=np.float64)
    np.add.at(A, condition, R)
    return A.astype(np.float32)


def preferred_stimuli_from_conditions(
    R_fit: np.ndarray, condition_fit: np.ndarray, stack: np.ndarray, chunk_pixels: int = 65536
) -> np.ndarray:
    """``PS = R_fit^T S_fit / n_fit`` where ``S_fit[t] = stack[condition_fit[t]]`` -- computed as
    ``(onehot^T R)^T stack / n_fit`` (units x pixels, float32)."""
    stack2 = _as_2d(stack)
    A = condition_sums(R_fit, condition_fit, len(stack2))
    out = preferred_stimulus_sums(A, stack2, chunk_pixels)
    out *= np.float32(1.0 / max(len(np.asarray(condition_fit)), 1))
    return out


def leave_one_out_images(
    R_fit: np.ndarray, condition_fit: np.ndarray, stack: np.ndarray, chunk_trials: int = 1024
) -> np.ndarray:
    """Images of the fit trials, each made with the ``PS`` of all the *other* fit trials (trials x pixels).

    With ``A = R_fit^T S_fit`` (the sum), trial ``t``'s leave-one-out ``PS`` is
    ``(A - R_t^T S_t) / (n - 1)``, so its image is ``(R_t A - |R_t|^2 S_t) / (n - 1)``: one GEMM for
    every trial and a rank-one correction -- no loop over trials, and no image carries its own
    stimulus."""
    R = np.asarray(R_fit, dtype=np.float32)
    condition = np.asarray(condition_fit, dtype=np.int64)
    n = len(R)
    if n < 2:
        raise ValueError(f"leave-one-out images need at least 2 fit trials, got {n}")
    stack2 = _as_2d(stack).astype(np.float32, copy=False)
    A = preferred_stimulus_sums(condition_sums(R, condition, len(stack2)), stack2)
    out = neural_images(R, A, chunk_trials)
    self_weight = np.einsum("tu,tu->t", R, R)
    for t0 in range(0, n, chunk_trials):  # chunks bound the (trials x pixels) temporary
        t1 = min(n, t0 + chunk_trials)
        out[t0:t1] -= self_weight[t0:t1, None] * stack2[condition[t0:t1]]
    out *= np.float32(1.0 / (n - 1))
    return out


def neural_images(R: np.ndarray, PS: np.ndarray, chunk_trials: int = 1024, out: np.ndarray | None = None) -> np.ndarray:
    """``I = R PS`` (trials x pixels, float32), chunked over trials; writes into ``out`` if given."""
    R = np.asarray(R, dtype=np.float32)
    PS2 = _as_2d(PS).astype(np.float32, copy=False)
    if R.ndim == 1:
        R = R[None, :]
    if R.shape[1] != PS2.shape[0]:
        raise ValueError(f"R has {R.shape[1]} units, PS has {PS2.shape[0]}")
    if out is None:
        out = np.empty((R.shape[0], PS2.shape[1]), dtype=np.float32)
    elif out.shape != (R.shape[0], PS2.shape[1]) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {(R.shape[0], PS2.shape[1])}, got {out.dtype} {out.shape}")
    for t0 in range(0, R.shape[0], chunk_trials):
        t1 = min(R.shape[0], t0 + chunk_trials)
        np.matmul(R[t0:t1], PS2, out=out[t0:t1])
    return out
