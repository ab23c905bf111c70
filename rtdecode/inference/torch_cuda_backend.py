"""torch-cuda backend: the bundle's network on an NVIDIA GPU through torch alone (no TensorRT).

Many GPU machines have torch with CUDA but not TensorRT, whose libraries are large and tied to the
driver. This backend runs the same network (rebuilt from the bundle's ``model.pt``) in fp16 or
fp32 with everything the hot path touches allocated once:

- a pinned host input and a device input of the bundle's static shape, a device output and a
  pinned host output;
- the forward pass captured once as a CUDA graph (after warm-up iterations on a side stream, as
  torch requires) and replayed per trial: one launch instead of GoogLeNet's ~200 kernels;
- per call: copy the trial's input into the pinned buffer, one non-blocking host-to-device copy,
  graph replay, one device-to-host copy of the two logits, a stream synchronise.

``graphs=False`` runs the same buffers eagerly (for comparison, or where graph capture fails).
The logits come back as float32 whatever the compute precision.
"""

from __future__ import annotations

import numpy as np

from rtdecode.inference.base import BackendUnavailable, WarmupMixin

PRECISIONS = ("fp16", "fp32")


def cuda_unavailable() -> str | None:
    """None when torch can run on a CUDA GPU here, else the reason it cannot."""
    try:
        import torch
    except Exception as err:  # noqa: BLE001 - any import failure is a reason
        return f"torch is not importable ({type(err).__name__}: {err})"
    if not torch.cuda.is_available():
        return f"no CUDA GPU is visible to torch {torch.__version__} (torch.cuda.is_available() is False)"
    return None


class TorchCudaBackend(WarmupMixin):
    name = "torch-cuda"

    def __init__(
        self,
        model,
        input_shape: tuple[int, ...],
        precision: str = "fp16",
        graphs: bool = True,
        device_index: int = 0,
    ) -> None:
        reason = cuda_unavailable()
        if reason is not None:
            raise BackendUnavailable(f"backend torch-cuda cannot run here: {reason}")
        if precision not in PRECISIONS:
            raise BackendUnavailable(f"backend torch-cuda runs fp16 or fp32, not {precision!r}")
        import torch

        self.torch = torch
        self.precision = precision
        self.input_shape = tuple(input_shape)
        self.dev = torch.device("cuda", device_index)
        dtype = torch.float16 if precision == "fp16" else torch.float32
        self.model = model.eval().to(self.dev, dtype)
        self.stream = torch.cuda.Stream(self.dev)
        self.host_in = torch.empty(self.input_shape, dtype=torch.float32, pin_memory=True)
        self._host_in_np = self.host_in.numpy()
        self.dev_in = torch.zeros(self.input_shape, dtype=dtype, device=self.dev)
        with torch.inference_mode():
            n_out = self.model(self.dev_in).shape[-1]
        self.host_out = torch.empty((self.input_shape[0], n_out), dtype=torch.float32, pin_memory=True)
        self.dev_out: torch.Tensor | None = None
        self.graph = None
        if graphs:
            self._capture()

    @classmethod
    def from_bundle(cls, bundle_dir, image_size: int, architecture: dict, precision: str = "fp16") -> TorchCudaBackend:
        from rtdecode.inference.torch_backend import TorchBackend

        cpu = TorchBackend.from_bundle(bundle_dir, image_size, architecture)
        return cls(cpu.model, cpu.input_shape, precision)

    def _capture(self) -> None:
        torch = self.torch
        with torch.inference_mode():
            self.stream.wait_stream(torch.cuda.current_stream(self.dev))
            with torch.cuda.stream(self.stream):
                for _ in range(3):  # warm-up on the side stream (cuDNN picks its algorithms here)
                    self.model(self.dev_in)
            torch.cuda.current_stream(self.dev).wait_stream(self.stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                self.dev_out = self.model(self.dev_in)
        self.graph = graph

    @property
    def device(self) -> str:
        t = self.torch
        mode = "CUDA graph" if self.graph is not None else "eager"
        return (
            f"torch {t.__version__} cuda {t.version.cuda} {t.cuda.get_device_name(self.dev)} {self.precision}, {mode}"
        )

    def infer(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        np.copyto(self._host_in_np, x)
        with torch.inference_mode(), torch.cuda.stream(self.stream):
            self.dev_in.copy_(self.host_in, non_blocking=True)
            if self.graph is not None:
                self.graph.replay()
                out = self.dev_out
            else:
                out = self.model(self.dev_in)
            self.host_out.copy_(out, non_blocking=True)
        self.stream.synchronize()
        return self.host_out.numpy().copy()
