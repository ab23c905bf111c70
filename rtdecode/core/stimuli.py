"""Stimuli in the Allen natural-scene pixel frame: geometry, static-grating rendering, gray levels.

The Allen Brain Observatory natural-scene templates are 918 x 1174 (rows x cols) uint8 images
pasted, unwarped, into a box that spans about 120 x 95 degrees of visual field at
~9.78 px/deg (reference/allen.md section 3.3). Static gratings are rendered here in that same
frame, so natural scenes and gratings share one pixel space ``S`` and preferred stimuli
``PS = R^T S`` live in it. A frame can be scaled down (``AllenFrame.scaled``) to keep arrays
small; degrees stay degrees.

Pure numpy, no I/O; the builder, the simulator and the daemon all use these functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Allen natural-scene template size (rows, cols) and the horizontal span of that box in degrees.
ALLEN_TEMPLATE_SHAPE = (918, 1174)
ALLEN_TEMPLATE_WIDTH_DEG = 120.0
#: Mean-luminance gray used for blanks and as the centre of every stimulus (8-bit).
STIMULUS_GRAY = 127.0

#: The static-grating grid of Brain Observatory 1.1 (6 x 5 x 4 = 120 conditions, contrast 0.8).
STATIC_GRATING_ORIENTATIONS = (0.0, 30.0, 60.0, 90.0, 120.0, 150.0)
STATIC_GRATING_SPATIAL_FREQUENCIES = (0.02, 0.04, 0.08, 0.16, 0.32)
STATIC_GRATING_PHASES = (0.0, 0.25, 0.5, 0.75)
STATIC_GRATING_CONTRAST = 0.8
#: Natural scenes: 118 images, ``frame`` 0..117; ``frame == -1`` is the blank sweep.
N_NATURAL_SCENES = 118
BLANK_FRAME = -1


@dataclass(frozen=True)
class AllenFrame:
    """A pixel frame covering the Allen natural-scene box, possibly scaled down."""

    height: int = ALLEN_TEMPLATE_SHAPE[0]
    width: int = ALLEN_TEMPLATE_SHAPE[1]

    @property
    def px_per_deg(self) -> float:
        return self.width / ALLEN_TEMPLATE_WIDTH_DEG

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @classmethod
    def scaled(cls, scale: float) -> AllenFrame:
        """The Allen frame at ``scale`` times the template resolution (1.0 = 918 x 1174)."""
        if not 0 < scale <= 1:
            raise ValueError(f"frame scale must be in (0, 1], got {scale}")
        h, w = ALLEN_TEMPLATE_SHAPE
        return cls(height=max(8, round(h * scale)), width=max(8, round(w * scale)))

    def degree_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Visual-field coordinates (deg) of pixel centres, origin at the frame centre.

        ``x`` grows to the right, ``y`` grows upward; both have shape (height, width)."""
        ppd = self.px_per_deg
        x = (np.arange(self.width) - (self.width - 1) / 2) / ppd
        y = ((self.height - 1) / 2 - np.arange(self.height)) / ppd
        return np.meshgrid(x, y)


def static_grating_conditions() -> np.ndarray:
    """The 120 (orientation, spatial_frequency, phase) conditions as an (120, 3) float array."""
    ori, sf, ph = np.meshgrid(
        STATIC_GRATING_ORIENTATIONS,
        STATIC_GRATING_SPATIAL_FREQUENCIES,
        STATIC_GRATING_PHASES,
        indexing="ij",
    )
    return np.stack([ori.ravel(), sf.ravel(), ph.ravel()], axis=1)


def render_static_gratings(
    frame: AllenFrame,
    orientation_deg: np.ndarray,
    spatial_frequency_cpd: np.ndarray,
    phase: np.ndarray,
    contrast: float | np.ndarray = STATIC_GRATING_CONTRAST,
    dtype: np.dtype = np.float32,
) -> np.ndarray:
    """Full-field static sinusoidal gratings as 8-bit gray levels, shape (n, height, width).

    ``cos(2*pi*(sf * x' + phase))`` with ``x' = x cos(ori) + y sin(ori)`` in degrees from the frame
    centre (AllenSDK ``get_spatial_grating`` convention), amplitude ``contrast * 127.5`` around gray
    127. NaN orientation or spatial frequency (the Allen blank sweep) renders uniform gray.
    """
    ori = np.deg2rad(np.atleast_1d(np.asarray(orientation_deg, dtype=np.float64)))
    sf = np.atleast_1d(np.asarray(spatial_frequency_cpd, dtype=np.float64))
    ph = np.atleast_1d(np.asarray(phase, dtype=np.float64))
    con = np.broadcast_to(np.asarray(contrast, dtype=np.float64), ori.shape)
    if not (ori.shape == sf.shape == ph.shape):
        raise ValueError(
            f"orientation, spatial frequency and phase must have one shape, got {ori.shape}, {sf.shape}, {ph.shape}"
        )
    blank = ~(np.isfinite(ori) & np.isfinite(sf))
    x, y = frame.degree_grid()
    # Separable: cos(a + b*x + c*y) for each condition as one broadcast expression.
    kx = np.where(blank, 0.0, sf * np.cos(ori))[:, None, None]
    ky = np.where(blank, 0.0, sf * np.sin(ori))[:, None, None]
    arg = 2 * np.pi * (kx * x[None] + ky * y[None] + np.where(blank, 0.0, ph)[:, None, None])
    amp = np.where(blank, 0.0, con * 127.5)[:, None, None]
    return (STIMULUS_GRAY + amp * np.cos(arg)).astype(dtype, copy=False)


def centred(images: np.ndarray) -> np.ndarray:
    """Gray-level-centred float32 images: ``(S - 127) / 127.5``, so gray is 0 and range is ~[-1, 1]."""
    return (np.asarray(images, dtype=np.float32) - np.float32(STIMULUS_GRAY)) / np.float32(127.5)


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a stack (n, H, W) to (n, *size), float32, bilinear with anti-aliasing.

    The whole Allen frame is mapped onto the model input (aspect ratio not preserved), so every
    pixel of the visual field the stimuli covered stays in the neural image."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    if tuple(x.shape[-2:]) == tuple(size):
        return x[:, 0].numpy().copy()
    with torch.inference_mode():
        y = F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return y[:, 0].numpy()
