"""torch eager backend: the reference the exported graph is checked against."""

from __future__ import annotations

import numpy as np

from rtdecode.inference.base import WarmupMixin


class TorchBackend(WarmupMixin):
    name = "torch"

    def __init__(self, model, input_shape: tuple[int, ...], threads: int = 1) -> None:
        import torch

        torch.set_num_threads(int(threads))
        self.torch = torch
        self.model = model.eval()
        self.input_shape = tuple(input_shape)

    @classmethod
    def from_bundle(cls, bundle_dir, image_size: int, architecture: dict, threads: int = 1) -> TorchBackend:
        """The bundle's network (``model.pt`` state dict) in torch eager."""
        from pathlib import Path

        import torch

        from rtdecode.inference.network import bundle_network

        model = bundle_network(architecture, image_size)
        model.load_state_dict(torch.load(Path(bundle_dir) / "model.pt", map_location="cpu", weights_only=True))
        return cls(model, (1, 3, image_size, image_size), threads)

    @property
    def device(self) -> str:
        return f"torch {self.torch.__version__} cpu ({self.torch.get_num_threads()} threads)"

    def infer(self, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model(self.torch.from_numpy(x)).numpy()
