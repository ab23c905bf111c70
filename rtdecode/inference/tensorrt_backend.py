"""TensorRT backend: engine built from the bundle's ONNX, cached, run with name-based I/O.

Follows TensorRT 10/11's Python API (reference/inference.md section 3):

- build: ``Builder`` -> ``create_network(0)`` -> ``OnnxParser.parse`` -> builder config with a
  workspace limit (and ``BuilderFlag.FP16`` on TensorRT 10 when fp16 is asked for; TensorRT 11
  removed the flag, precision then comes from the graph) -> ``build_serialized_network``;
- cache: next to the bundle, keyed by the ONNX sha256, TensorRT version, GPU name and compute
  capability, and precision; written atomically; a plan that fails to deserialize is rebuilt;
- run: device buffers and a CUDA stream allocated once through torch, ``set_tensor_address`` for
  every I/O tensor, ``execute_async_v3`` on the stream, pinned host staging buffers.

Nothing here is imported unless the backend is asked for, and without a GPU or tensorrt it raises
:class:`BackendUnavailable` with the reason. Tests for it are marked ``gpu``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rtdecode.inference.base import BackendUnavailable, WarmupMixin

#: Major versions whose Python API this module follows (TensorRT 8 lacks name-based I/O as used here).
SUPPORTED_TENSORRT_MAJOR = (10, 11)


def _import_tensorrt():
    try:
        import tensorrt as trt
    except Exception as err:  # ImportError, or the PyPI stub failing to load its libraries
        raise BackendUnavailable(
            f"TensorRT is not importable ({type(err).__name__}: {err}); install the `gpu` extra on a rig with "
            "NVIDIA's package index"
        ) from None
    major = int(str(getattr(trt, "__version__", "0")).split(".")[0] or 0)
    if major not in SUPPORTED_TENSORRT_MAJOR:
        raise BackendUnavailable(
            f"TensorRT {trt.__version__} is not supported: this backend uses the name-based I/O API of "
            f"TensorRT {' and '.join(map(str, SUPPORTED_TENSORRT_MAJOR))} (set_tensor_address, execute_async_v3)"
        )
    try:
        import torch
    except ImportError as err:
        raise BackendUnavailable(f"the TensorRT backend uses torch for CUDA buffers ({err})") from None
    if not torch.cuda.is_available():
        raise BackendUnavailable("no CUDA GPU is visible (torch.cuda.is_available() is False)")
    return trt, torch


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def engine_key(onnx_path: Path, precision: str) -> EngineKey:
    trt, torch = _import_tensorrt()
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return EngineKey(
        onnx_sha256=hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest(),
        tensorrt_version=trt.__version__,
        gpu_name=props.name,
        compute_capability=f"{props.major}.{props.minor}",
        precision=precision,
    )


def build_engine(onnx_path: Path, precision: str = "fp32", workspace_mb: int = 512) -> bytes:
    """Serialize a TensorRT engine from an ONNX file."""
    trt, _ = _import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if precision == "fp16":
        if hasattr(trt.BuilderFlag, "FP16"):  # TensorRT 10.x
            config.set_flag(trt.BuilderFlag.FP16)
        # TensorRT 11 is strongly typed: an fp16 engine needs an fp16 graph (export with precision fp16).
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    return bytes(plan)


def cached_engine(onnx_path: Path, cache_dir: Path, precision: str = "fp32", log=print) -> tuple[Path, EngineKey]:
    """The cached plan for this ONNX/TensorRT/GPU/precision, building it (atomically) if needed."""
    key = engine_key(onnx_path, precision)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    plan_path = cache_dir / f"engine-{key.digest()}.plan"
    meta_path = plan_path.with_suffix(".json")
    if plan_path.is_file() and meta_path.is_file() and json.loads(meta_path.read_text()) == asdict(key):
        return plan_path, key
    log(f"building TensorRT engine for {key.gpu_name} ({key.precision}, TensorRT {key.tensorrt_version}) ...")
    plan = build_engine(onnx_path, precision)
    for path, data in ((plan_path, plan), (meta_path, json.dumps(asdict(key), indent=2).encode())):
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return plan_path, key


class TensorRTBackend(WarmupMixin):
    name = "tensorrt"

    def __init__(self, onnx_path: str | Path, cache_dir: str | Path, precision: str = "fp32", log=print) -> None:
        trt, torch = _import_tensorrt()
        self.torch = torch
        plan_path, self.key = cached_engine(Path(onnx_path), Path(cache_dir), precision, log)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(plan_path.read_bytes())
        if self.engine is None:  # stale or incompatible plan: rebuild once
            log(f"cached engine {plan_path} did not deserialize; rebuilding")
            plan_path.unlink(missing_ok=True)
            plan_path, self.key = cached_engine(Path(onnx_path), Path(cache_dir), precision, log)
            self.engine = self.runtime.deserialize_cuda_engine(plan_path.read_bytes())
            if self.engine is None:
                raise BackendUnavailable(f"TensorRT cannot deserialize the engine it just built ({plan_path})")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendUnavailable(f"expected one input and one output tensor, got {inputs} / {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_shape = tuple(self.engine.get_tensor_shape(self.input_name))
        out_shape = tuple(self.engine.get_tensor_shape(self.output_name))
        # Buffers and stream once (no allocation on the hot path).
        self.stream = torch.cuda.Stream()
        self.d_in = torch.empty(self.input_shape, dtype=torch.float32, device="cuda")
        self.d_out = torch.empty(out_shape, dtype=torch.float32, device="cuda")
        self.h_in = torch.empty(self.input_shape, dtype=torch.float32).pin_memory()
        self.h_out = torch.empty(out_shape, dtype=torch.float32).pin_memory()
        self.context.set_tensor_address(self.input_name, self.d_in.data_ptr())
        self.context.set_tensor_address(self.output_name, self.d_out.data_ptr())

    @property
    def device(self) -> str:
        return f"tensorrt {self.key.tensorrt_version} on {self.key.gpu_name} ({self.key.precision})"

    def infer(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        self.h_in.numpy()[...] = x
        with torch.cuda.stream(self.stream):
            self.d_in.copy_(self.h_in, non_blocking=True)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            self.h_out.copy_(self.d_out, non_blocking=True)
        self.stream.synchronize()
        return self.h_out.numpy().copy()
