"""GPU figures for the README, measured on the machine it runs on (``tools/gpu_check.sh`` runs it).

Needs torch with CUDA and numpy; torchvision for GoogLeNet; onnxruntime (and torch's ONNX
exporter) for the logit comparison with ONNX Runtime on the CPU. What cannot run is skipped and
says why -- nothing here is estimated. Prints a table and writes ``gpu_check.json`` (to ``$OUT``
when set, else the working directory).

Measured: the decoder network (torchvision GoogLeNet, 2-class head, the paper's 1 x 3 x 224 x 224
input) through ``rtdecode.inference.torch_cuda_backend.TorchCudaBackend``: per-call latency
p50/p99 over ``--calls`` calls for fp16 and fp32 with CUDA-graph replay, and fp16 eager for
comparison; a call is the daemon's: host input -> device -> network -> two logits back on the host.
Then the same weights exported to ONNX and run by ONNX Runtime's CPU provider on the same inputs:
the largest logit difference per precision.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # rtdecode.inference without installing the project


def _latency(backend, x: np.ndarray, calls: int) -> dict:
    backend.warmup(50)
    t = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter_ns()
        backend.infer(x)
        t[i] = time.perf_counter_ns() - t0
    t /= 1e6
    return {"p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99)), "mean_ms": float(t.mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=2000, help="timed calls per configuration")
    ap.add_argument("--size", type=int, default=224, help="input side (the paper's 224)")
    args = ap.parse_args(argv)
    out_dir = Path(os.environ.get("OUT", "."))
    result: dict = {"python": platform.python_version(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "skipped": {}}

    def skip(what: str, why: str) -> None:
        result["skipped"][what] = why
        print(f"skipped {what}: {why}")

    try:
        import torch
    except Exception as err:
        skip("everything", f"torch is not importable ({type(err).__name__}: {err})")
        return _finish(result, out_dir)
    result["torch"] = torch.__version__
    from rtdecode.inference.torch_cuda_backend import TorchCudaBackend, cuda_unavailable

    reason = cuda_unavailable()
    if reason is not None:
        skip("everything", reason)
        return _finish(result, out_dir)
    result["cuda"] = torch.version.cuda
    result["gpu"] = torch.cuda.get_device_name(0)
    result["cudnn"] = torch.backends.cudnn.version()
    try:
        from rtdecode.inference.network import decoder_net
    except Exception as err:
        skip("GoogLeNet", f"torchvision is not importable ({type(err).__name__}: {err}); give a wheel matching torch")
        return _finish(result, out_dir)

    shape = (1, 3, args.size, args.size)
    torch.manual_seed(0)
    net = decoder_net(2)
    for m in net.modules():  # He init: with torchvision's (std 0.01) the logits are the bias whatever the input
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    rng = np.random.default_rng(0)
    xs = [rng.normal(0, 1, shape).astype(np.float32) for _ in range(8)]
    import copy

    rows = {}
    logits = {}
    for label, precision, graphs in (
        ("fp16 graph", "fp16", True),
        ("fp32 graph", "fp32", True),
        ("fp16 eager", "fp16", False),
    ):
        b = TorchCudaBackend(copy.deepcopy(net), shape, precision, graphs=graphs)
        rows[label] = _latency(b, xs[0], args.calls)
        rows[label]["device"] = b.device
        if graphs:
            logits[precision] = np.concatenate([b.infer(x) for x in xs])
        print(f"{label:>11}: p50 {rows[label]['p50_ms']:.3f} ms, p99 {rows[label]['p99_ms']:.3f} ms ({b.device})")
        del b
        torch.cuda.empty_cache()
    try:  # the network the lab's builds train (EfficientNet-Lite0, tap 4, 4 x 4 grid), same input
        from rtdecode.inference.efficientnet import efficientnet_decoder

        torch.manual_seed(0)
        eff = efficientnet_decoder(args.size, tap=4, grid=4)
        for label, precision in (("effnet fp16", "fp16"), ("effnet fp32", "fp32")):
            b = TorchCudaBackend(copy.deepcopy(eff), shape, precision, graphs=True)
            rows[label] = {**_latency(b, xs[0], args.calls), "device": b.device}
            print(f"{label:>11}: p50 {rows[label]['p50_ms']:.3f} ms, p99 {rows[label]['p99_ms']:.3f} ms ({b.device})")
            del b
            torch.cuda.empty_cache()
    except Exception as err:
        skip("EfficientNet-Lite0", f"{type(err).__name__}: {err}")
    result["latency"] = rows

    try:
        import onnxruntime as ort
    except Exception as err:
        skip("ONNX Runtime comparison", f"onnxruntime is not importable ({type(err).__name__}: {err})")
        return _finish(result, out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.onnx"
        try:
            cpu_net = copy.deepcopy(net).eval()
            torch.onnx.export(
                cpu_net,
                (torch.from_numpy(xs[0]),),
                str(path),
                input_names=["input"],
                output_names=["logits"],
                opset_version=17,
                dynamo=False,
            )
        except Exception as err:
            skip("ONNX Runtime comparison", f"torch's ONNX export failed ({type(err).__name__}: {err})")
            return _finish(result, out_dir)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        ref = np.concatenate([sess.run(None, {"input": x})[0] for x in xs])
    result["onnxruntime"] = ort.__version__
    result["max_abs_logit_diff_vs_onnxruntime_cpu"] = {p: float(np.abs(v - ref).max()) for p, v in logits.items()}
    result["max_abs_logit_onnxruntime_cpu"] = float(np.abs(ref).max())
    result["logit_spread_across_inputs"] = float(np.ptp(ref, axis=0).max())  # > 0: the check can fail
    for p, d in result["max_abs_logit_diff_vs_onnxruntime_cpu"].items():
        print(f"{p}: largest logit difference to ONNX Runtime CPU {d:.2e} (logits up to {np.abs(ref).max():.2f})")
    return _finish(result, out_dir)


def _finish(result: dict, out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu_check.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
