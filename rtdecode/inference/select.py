"""Pick a backend: ``auto`` = TensorRT when a GPU and tensorrt are present, else ONNX Runtime."""

from __future__ import annotations

import warnings
from pathlib import Path

from rtdecode.bundle import read_manifest
from rtdecode.inference.base import Backend, BackendUnavailable


def tensorrt_available() -> str | None:
    """None when TensorRT can run here, else the reason it cannot."""
    try:
        from rtdecode.inference.tensorrt_backend import _import_tensorrt

        _import_tensorrt()
    except BackendUnavailable as err:
        return str(err)
    return None


def default_engine_cache(bundle_dir: str | Path) -> Path:
    """Engines are cached next to the (read-only) bundle: ``<bundle>.engines/``."""
    b = Path(bundle_dir)
    return b.parent / (b.name + ".engines")


def make_backend(
    kind: str,
    bundle_dir: str | Path,
    intra_op_threads: int = 1,
    precision: str = "fp32",
    engine_cache_dir: str | Path | None = None,
    log=print,
) -> Backend:
    """Create the backend ``kind`` (auto, onnxruntime, tensorrt, torch) for a decoder bundle."""
    onnx_path = Path(bundle_dir) / "model.onnx"
    cache = Path(engine_cache_dir) if engine_cache_dir else default_engine_cache(bundle_dir)
    if kind == "auto":
        reason = tensorrt_available()
        if reason is None:
            try:
                from rtdecode.inference.tensorrt_backend import TensorRTBackend

                return TensorRTBackend(onnx_path, cache, precision, log)
            except (BackendUnavailable, RuntimeError) as err:
                warnings.warn(f"TensorRT failed ({err}); falling back to ONNX Runtime", stacklevel=2)
        kind = "onnxruntime"
    if kind == "onnxruntime":
        from rtdecode.inference.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(onnx_path, intra_op_threads)
    if kind == "tensorrt":
        from rtdecode.inference.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(onnx_path, cache, precision, log)
    if kind == "torch":
        from rtdecode.inference.torch_backend import TorchBackend

        m = read_manifest(bundle_dir)
        return TorchBackend.from_bundle(bundle_dir, m.image_size, m.architecture.model_dump(), intra_op_threads)
    raise BackendUnavailable(f"unknown backend {kind!r}; expected auto, onnxruntime, tensorrt or torch")
