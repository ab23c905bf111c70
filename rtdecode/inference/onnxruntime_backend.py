"""ONNX Runtime backend (CPU by default; GPU providers when onnxruntime-gpu is installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtdecode.inference.base import BackendUnavailable, WarmupMixin


class OnnxRuntimeBackend(WarmupMixin):
    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, intra_op_threads: int = 1, providers: list[str] | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendUnavailable(f"onnxruntime is not installed ({err})") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(intra_op_threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=providers or ["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        if any(not isinstance(d, int) for d in inp.shape):
            raise BackendUnavailable(
                f"{onnx_path}: input {inp.name} has a dynamic shape {inp.shape}; export a static 1x3xSxS graph"
            )
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        self.input_shape = tuple(inp.shape)

    @property
    def device(self) -> str:
        return "onnxruntime " + "+".join(self.session.get_providers())

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]
