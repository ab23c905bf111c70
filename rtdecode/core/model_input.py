"""Neural images -> classifier input: one global scale fit on training images, 3 channels.

A single mean and std over all training pixels (not per image) keeps the overall response
magnitude, which carries information; the same two numbers go into the decoder bundle so the
daemon normalises exactly like the builder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageNormalisation:
    mean: float
    std: float
    image_size: int

    @classmethod
    def fit(cls, images: np.ndarray, image_size: int) -> ImageNormalisation:
        x = np.asarray(images, dtype=np.float64)
        std = float(x.std())
        return cls(mean=float(x.mean()), std=std if std > 0 else 1.0, image_size=int(image_size))

    def to_model_input(self, images: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(n, H*W) or (n, H, W) neural images -> (n, 3, H, W) float32, normalised."""
        s = self.image_size
        x = np.asarray(images, dtype=np.float32).reshape(-1, s, s)
        if out is None:
            out = np.empty((x.shape[0], 3, s, s), dtype=np.float32)
        np.subtract(x, np.float32(self.mean), out=out[:, 0])
        out[:, 0] *= np.float32(1.0 / self.std)
        out[:, 1] = out[:, 0]
        out[:, 2] = out[:, 0]
        return out

    def as_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "image_size": self.image_size}
