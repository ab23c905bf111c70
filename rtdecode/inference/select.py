"""Pick a backend: ``auto`` = TensorRT when a GPU and tensorrt are present, else torch-cuda when
torch sees a CUDA GPU, else ONNX Runtime on the CPU."""

from __future__ import annotations

import warnings
from pathlib import Path

from rtdecode.bundle import Bundle
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
    bundle: Bundle,
    intra_op_threads: int = 1,
    precision: str = "fp32",
    engine_cache_dir: str | Path | None = None,
    log=print,
) -> Backend:
    """Create the backend ``kind`` (auto, onnxruntime, tensorrt, torch-cuda, torch) for a loaded
    decoder bundle (its manifest says the model's architecture and input size; nothing is re-read).

    ``precision = "int8"`` runs the bundle's INT8 model (``model.int8.onnx``) on ONNX Runtime; a
    bundle without one is refused with the builder's reason."""
    bundle_dir, m = bundle.path, bundle.manifest
    onnx_path = bundle.onnx_path
    cache = Path(engine_cache_dir) if engine_cache_dir else default_engine_cache(bundle_dir)
    if precision == "int8":
        if kind not in ("auto", "onnxruntime"):
            raise BackendUnavailable(
                f"precision int8 runs the bundle's INT8 model on ONNX Runtime; backend {kind!r} cannot "
                "(use backend = 'onnxruntime' or 'auto', or precision fp32/fp16)"
            )
        info = m.int8
        if info is None or not info.included:
            why = info.reason if info is not None else "it was built before INT8 models existed"
            raise BackendUnavailable(f"{bundle_dir} has no INT8 model ({why}); use precision = 'fp32'")
        from rtdecode.inference.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(Path(bundle_dir) / "model.int8.onnx", intra_op_threads)
    if kind == "auto":
        reason = tensorrt_available()
        if reason is None:
            try:
                from rtdecode.inference.tensorrt_backend import TensorRTBackend

                return TensorRTBackend(onnx_path, cache, precision, log)
            except (BackendUnavailable, RuntimeError) as err:
                warnings.warn(f"TensorRT failed ({err}); falling back", stacklevel=2)
        from rtdecode.inference.torch_cuda_backend import cuda_unavailable

        kind = "torch-cuda" if cuda_unavailable() is None else "onnxruntime"
        if kind == "torch-cuda" and precision not in ("fp16", "fp32"):
            kind = "onnxruntime"
    if kind == "onnxruntime":
        from rtdecode.inference.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(onnx_path, intra_op_threads)
    if kind == "tensorrt":
        from rtdecode.inference.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(onnx_path, cache, precision, log)
    if kind == "torch-cuda":
        from rtdecode.inference.torch_cuda_backend import TorchCudaBackend

        return TorchCudaBackend.from_bundle(bundle_dir, m.image_size, m.architecture.model_dump(), precision)
    if kind == "torch":
        from rtdecode.inference.torch_backend import TorchBackend

        return TorchBackend.from_bundle(bundle_dir, m.image_size, m.architecture.model_dump(), intra_op_threads)
    raise BackendUnavailable(f"unknown backend {kind!r}; expected auto, onnxruntime, tensorrt, torch-cuda or torch")
