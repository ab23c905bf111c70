"""Export the trained network to ONNX (static 1x3xSxS) and prove the export is faithful.

The parity check compares torch and ONNX Runtime logits on real inputs within ``atol``, and first
refuses a *degenerate* model: torchvision's random initialisation gives logits equal to the final
bias for every input in eval mode, and a parity test on such a model passes trivially (DESIGN
section 10). So the logits must vary across the check inputs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtdecode.errors import RtdecodeError

INPUT_NAME = "neural_image"
OUTPUT_NAME = "logits"


class ExportError(RtdecodeError):
    """The exported graph does not reproduce the network, or the network is degenerate."""


def export_onnx(model, path: Path, image_size: int, opset: int = 17) -> Path:
    """Static (1, 3, S, S) float32 -> (1, 2) logits graph, via torch's TorchScript exporter."""
    import torch

    model.eval()
    x = torch.zeros(1, 3, image_size, image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )
    import onnx

    onnx.checker.check_model(str(path))
    return Path(path)


@dataclass
class ParityResult:
    max_abs_diff: float
    logit_std_across_inputs: float
    n_inputs: int
    argmax_agreement: float

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def check_parity(
    model, onnx_path: Path, inputs: np.ndarray, atol: float = 1e-4, rtol: float = 1e-4, min_logit_std: float = 1e-3
) -> ParityResult:
    """torch vs ONNX Runtime on ``inputs`` (n, 3, S, S); raises :class:`ExportError` on mismatch.

    Logits must agree within ``atol + rtol * |torch logit|`` (float32 rounding grows with the
    logits' size, which training from scratch can make large)."""
    import torch

    from rtdecode.inference.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(onnx_path, intra_op_threads=1)
    model.eval()
    with torch.inference_mode():
        ref = model(torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))).numpy()
    got = np.concatenate([backend.infer(np.ascontiguousarray(x[None], dtype=np.float32)) for x in inputs])
    spread = float((ref[:, 1] - ref[:, 0]).std())
    if spread < min_logit_std:
        raise ExportError(
            f"the model is degenerate: its logit difference varies by only {spread:.2e} across {len(inputs)} "
            "inputs, so a parity check would pass trivially (untrained random initialisation?)"
        )
    diff = float(np.abs(ref - got).max())
    result = ParityResult(diff, spread, len(inputs), float((ref.argmax(1) == got.argmax(1)).mean()))
    excess = np.abs(ref - got) - (atol + rtol * np.abs(ref))
    if (excess > 0).any():
        k = np.unravel_index(np.argmax(excess), excess.shape)
        raise ExportError(
            f"ONNX and torch logits differ by up to {diff:.2e} on {len(inputs)} inputs (input {k[0]}: torch "
            f"{ref[k]:.6f}, onnxruntime {got[k]:.6f}; allowed {atol:.0e} + {rtol:.0e} x |logit|)"
        )
    return result


INT8_MIN_AGREEMENT = 0.99


@dataclass
class Int8Result:
    path: Path | None  # None when refused
    agreement: float  # decisions equal to fp32's on held-out inputs
    n_heldout: int
    n_calibration: int
    max_abs_logit_diff: float
    reason: str | None  # why it was refused

    def as_manifest(self) -> dict:
        return {
            "included": self.path is not None,
            "agreement": self.agreement,
            "n_heldout": self.n_heldout,
            "n_calibration": self.n_calibration,
            "max_abs_logit_diff": self.max_abs_logit_diff,
            "reason": self.reason,
        }


def quantize_int8(
    onnx_path: Path,
    out_path: Path,
    calibration: np.ndarray,
    heldout: np.ndarray,
    min_agreement: float = INT8_MIN_AGREEMENT,
) -> Int8Result:
    """ONNX Runtime static QDQ quantization (per-channel int8 weights, uint8 activations) calibrated on
    ``calibration`` inputs (the bundle's own training neural images); refused (``path`` None) when its
    decisions agree with fp32's on fewer than ``min_agreement`` of the ``heldout`` inputs."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from rtdecode.inference.onnxruntime_backend import OnnxRuntimeBackend

    class Reader(CalibrationDataReader):
        def __init__(self, xs: np.ndarray) -> None:
            self._it = iter([{INPUT_NAME: np.ascontiguousarray(x[None], dtype=np.float32)} for x in xs])

        def get_next(self):
            return next(self._it, None)

    out_path = Path(out_path)
    pre = out_path.with_name(out_path.stem + ".pre.onnx")
    quant_pre_process(str(onnx_path), str(pre))
    quantize_static(
        str(pre),
        str(out_path),
        Reader(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
    )
    pre.unlink()
    fp32, int8 = OnnxRuntimeBackend(onnx_path), OnnxRuntimeBackend(out_path)
    a = np.concatenate([fp32.infer(np.ascontiguousarray(x[None], dtype=np.float32)) for x in heldout])
    b = np.concatenate([int8.infer(np.ascontiguousarray(x[None], dtype=np.float32)) for x in heldout])
    agreement = float((a.argmax(1) == b.argmax(1)).mean())
    reason = None
    if agreement < min_agreement:
        reason = (
            f"INT8 decisions agree with fp32 on {agreement:.1%} of {len(heldout)} held-out inputs, "
            f"below {min_agreement:.0%}"
        )
        out_path.unlink()
    return Int8Result(
        None if reason else out_path, agreement, len(heldout), len(calibration), float(np.abs(a - b).max()), reason
    )
