"""Synthetic natural scenes with natural-image statistics (dead-leaves model), no downloads.

Real Allen natural scenes (Berkeley, van Hateren, McGill photographs) cannot be fetched here.
The dead-leaves model -- opaque, occluding objects with power-law distributed sizes -- is the
standard generative model that reproduces the statistics V1 cares about: a ~1/f^2 power
spectrum, scale invariance, sharp occlusion edges of every orientation, and heavy-tailed
(sparse) local contrast. Each leaf here is an ellipse of random orientation and aspect ratio
with a shaded (linear-gradient) surface; a little fine texture and optical blur are added, and
each image is contrast-normalised around the Allen gray like the real templates.

Deterministic for a seed; every image is distinct.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from rtdecode.core.stimuli import STIMULUS_GRAY, AllenFrame


def dead_leaves_image(
    rng: np.random.Generator,
    shape: tuple[int, int],
    n_leaves: int | None = None,
    r_min: float = 2.0,
    r_max_frac: float = 0.35,
    target_std: float = 48.0,
) -> np.ndarray:
    """One dead-leaves image (float64, gray levels, mean ~127), leaves drawn back to front.

    Radii follow ``p(r) ~ r^-3`` between ``r_min`` px and ``r_max_frac * width``, which gives the
    scale-invariant 1/f^2 spectrum of natural images.
    """
    h, w = shape
    r_max = max(r_min * 2, r_max_frac * w)
    if n_leaves is None:
        n_leaves = int(np.clip(2 * h * w / (r_min * 4) ** 2, 300, 6000))
    # Inverse-CDF sampling of p(r) ~ r^-3 on [r_min, r_max].
    u = rng.random(n_leaves)
    radius = 1.0 / np.sqrt(1 / r_min**2 - u * (1 / r_min**2 - 1 / r_max**2))
    cy = rng.uniform(-r_max, h + r_max, n_leaves)
    cx = rng.uniform(-r_max, w + r_max, n_leaves)
    theta = rng.uniform(0, np.pi, n_leaves)
    aspect = np.exp(rng.normal(0, 0.45, n_leaves))
    level = rng.beta(1.6, 1.6, n_leaves) * 255
    slope = rng.normal(0, 0.6, (n_leaves, 2))

    img = np.full(shape, rng.uniform(60, 190))
    for i in range(n_leaves):  # one small box per leaf; a generator, not a hot path
        a = radius[i] * aspect[i]
        b = radius[i] / aspect[i]
        ext = max(a, b)
        y0, y1 = int(max(0, cy[i] - ext)), int(min(h, cy[i] + ext + 1))
        x0, x1 = int(max(0, cx[i] - ext)), int(min(w, cx[i] + ext + 1))
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        dy, dx = yy - cy[i], xx - cx[i]
        c, s = np.cos(theta[i]), np.sin(theta[i])
        u_ = dx * c + dy * s
        v_ = -dx * s + dy * c
        inside = (u_ / a) ** 2 + (v_ / b) ** 2 <= 1.0
        shade = level[i] + slope[i, 0] * u_ + slope[i, 1] * v_
        patch = img[y0:y1, x0:x1]
        patch[inside] = np.broadcast_to(shade, inside.shape)[inside]

    img += gaussian_filter(rng.normal(0, 6.0, shape), 0.8)  # surface texture
    img = gaussian_filter(img, 0.4)  # optics
    img = (img - img.mean()) / max(img.std(), 1e-6) * target_std
    return np.clip(img + STIMULUS_GRAY + rng.normal(0, 4.0), 0, 255)


def natural_scene_stack(frame: AllenFrame, n_images: int, seed: int) -> np.ndarray:
    """``n_images`` distinct dead-leaves scenes in ``frame``, uint8 (n, height, width)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5CE7E5]))
    stack = np.empty((n_images, *frame.shape), dtype=np.uint8)
    for k in range(n_images):
        stack[k] = np.round(dead_leaves_image(rng, frame.shape)).astype(np.uint8)
    return stack


def radial_power_spectrum(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum (frequencies in cycles/px, power), for checking ~1/f^2."""
    img = np.asarray(image, dtype=np.float64)
    img = img - img.mean()
    h, w = img.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fftshift(np.fft.fft2(img * win))) ** 2
    fy = np.fft.fftshift(np.fft.fftfreq(h))
    fx = np.fft.fftshift(np.fft.fftfreq(w))
    fr = np.hypot(*np.meshgrid(fx, fy))
    bins = np.linspace(0, 0.5, 33)
    idx = np.digitize(fr.ravel(), bins)
    counts = np.bincount(idx, minlength=len(bins) + 1)[1 : len(bins)]
    sums = np.bincount(idx, weights=power.ravel(), minlength=len(bins) + 1)[1 : len(bins)]
    centres = 0.5 * (bins[1:] + bins[:-1])
    ok = counts > 0
    return centres[ok], sums[ok] / counts[ok]
