"""``rtdecode bench offline``: neural images at Allen size, and ONNX Runtime vs torch eager.

Timings on a shared machine are noisy, so every number that matters is a ratio of two things
measured side by side in the same run; the JSON keeps the raw times, the machine and versions.

1. ``PS`` + neural images for an Allen-size session (default 12,000 trials x 400 units x 224^2):
   the per-condition GEMM path, the direct ``R^T S`` GEMM, and a naive Python loop over trials and
   units on a subset (extrapolated), with wall time and peak resident memory.
2. The exported classifier (static 1x3x224x224): ONNX Runtime vs torch eager, one thread each,
   interleaved calls, median and p99 latency, and the logit difference.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from rtdecode.core.neural_image import neural_images, preferred_stimuli_from_conditions, preferred_stimulus_sums


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_neural_images(
    n_trials: int = 12000,
    n_units: int = 400,
    size: int = 224,
    n_conditions: int = 239,
    naive_trials: int = 8,
    seed: int = 0,
) -> dict:
    rng = np.random.default_rng(seed)
    R = rng.normal(0, 1, (n_trials, n_units)).astype(np.float32)
    cond = rng.integers(0, n_conditions, n_trials)
    stack = rng.normal(0, 0.5, (n_conditions, size * size)).astype(np.float32)
    pixels = size * size
    out = {"n_trials": n_trials, "n_units": n_units, "pixels": pixels}

    rss0 = _peak_rss_mb()
    t = time.perf_counter()
    PS = preferred_stimuli_from_conditions(R, cond, stack)
    out["ps_condition_path_s"] = time.perf_counter() - t

    images = np.empty((n_trials, pixels), dtype=np.float32)  # preallocated, as the daemon does
    t = time.perf_counter()
    neural_images(R, PS, chunk_trials=1024, out=images)
    out["images_gemm_s"] = time.perf_counter() - t
    out["ps_plus_images_s"] = out["ps_condition_path_s"] + out["images_gemm_s"]

    # Direct R^T S (S materialised trial by trial, in chunks to bound memory).
    t = time.perf_counter()
    PS_direct = np.zeros((n_units, pixels), dtype=np.float32)
    for t0 in range(0, n_trials, 1000):
        S = stack[cond[t0 : t0 + 1000]]
        PS_direct += preferred_stimulus_sums(R[t0 : t0 + 1000], S)
    PS_direct /= n_trials  # PS is the mean over its fit trials
    out["ps_direct_gemm_s"] = time.perf_counter() - t
    out["ps_paths_max_rel_diff"] = float(np.abs(PS_direct - PS).max() / (np.abs(PS).max() + 1e-12))
    out["peak_rss_mb"] = _peak_rss_mb()
    out["peak_rss_increase_mb"] = out["peak_rss_mb"] - rss0
    del images, PS_direct

    # Naive loops over trials and units (what the design forbids), on a subset, extrapolated.
    k = naive_trials
    t = time.perf_counter()
    ps_naive = np.zeros((n_units, pixels), dtype=np.float32)
    for tr in range(k):
        s = stack[cond[tr]]
        for i in range(n_units):
            ps_naive[i] += R[tr, i] * s
    naive_ps_per_trial = (time.perf_counter() - t) / k
    t = time.perf_counter()
    for tr in range(k):
        img = np.zeros(pixels, dtype=np.float32)
        for i in range(n_units):
            img += R[tr, i] * PS[i]
    naive_img_per_trial = (time.perf_counter() - t) / k
    out["naive_subset_trials"] = k
    out["naive_extrapolated_s"] = (naive_ps_per_trial + naive_img_per_trial) * n_trials
    out["speedup_vs_naive"] = out["naive_extrapolated_s"] / out["ps_plus_images_s"]
    out["speedup_condition_vs_direct_ps"] = out["ps_direct_gemm_s"] / out["ps_condition_path_s"]
    return out


def bench_inference(
    size: int = 224,
    n_calls: int = 60,
    warmup: int = 10,
    work_dir: Path | None = None,
    seed: int = 0,
    backbone: str = "googlenet",
) -> dict:
    """One network's latency per trial: ONNX Runtime fp32 and INT8 against torch eager, interleaved.
    ``googlenet``: the paper's network on its global features, BatchNorm-calibrated random init;
    ``efficientnet-lite0``: the ImageNet-pretrained network as a bundle holds it (head on block 4)."""
    import tempfile

    import torch
    from rtdecode.offline import model as gnet
    from rtdecode.offline.export import export_onnx, quantize_int8

    from rtdecode.inference.onnxruntime_backend import OnnxRuntimeBackend

    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    if backbone == "googlenet":
        m = gnet.build_googlenet(2, seed=seed, tap=None)
        gnet.calibrate_batchnorm(m, rng.normal(0, 1, (8, 3, size, size)).astype(np.float32), passes=1)
    else:
        from rtdecode.offline.backbones import load_backbone

        m = load_backbone(backbone, size, seed=seed).model
    m.eval()
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        path = export_onnx(m, Path(tmp) / "bench.onnx", size)
        ort = OnnxRuntimeBackend(path, intra_op_threads=1)
        xs = [rng.normal(0, 1, (1, 3, size, size)).astype(np.float32) for _ in range(8)]
        calib = rng.normal(0, 1, (16, 3, size, size)).astype(np.float32)
        q = quantize_int8(path, Path(tmp) / "bench.int8.onnx", calib, np.concatenate(xs), min_agreement=0.0)
        ort8 = OnnxRuntimeBackend(q.path, intra_op_threads=1)
        mc = m.to(memory_format=torch.channels_last)

        def torch_call(x):
            with torch.inference_mode():
                return mc(torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).numpy()

        def torch_plain(x):
            with torch.no_grad():
                return m(torch.from_numpy(x)).numpy()

        for i in range(warmup):
            ort.infer(xs[i % 8])
            ort8.infer(xs[i % 8])
            torch_call(xs[i % 8])
            torch_plain(xs[i % 8])
        t_ort, t_ort8, t_torch, t_plain, diff = [], [], [], [], 0.0
        for i in range(n_calls):  # interleaved, so both see the same machine load
            x = xs[i % 8]
            t = time.perf_counter()
            a = ort.infer(x)
            t_ort.append(time.perf_counter() - t)
            t = time.perf_counter()
            ort8.infer(x)
            t_ort8.append(time.perf_counter() - t)
            t = time.perf_counter()
            b = torch_call(x)
            t_torch.append(time.perf_counter() - t)
            t = time.perf_counter()
            torch_plain(x)
            t_plain.append(time.perf_counter() - t)
            diff = max(diff, float(np.abs(a - b).max()))
    ms = lambda v, q: float(np.percentile(np.asarray(v) * 1000, q))  # noqa: E731
    return {
        "network": backbone,
        "image_size": size,
        "threads": 1,
        "calls": n_calls,
        "onnxruntime_ms_p50": ms(t_ort, 50),
        "onnxruntime_ms_p99": ms(t_ort, 99),
        "onnxruntime_int8_ms_p50": ms(t_ort8, 50),
        "onnxruntime_int8_ms_p99": ms(t_ort8, 99),
        "speedup_int8_vs_fp32_p50": ms(t_ort, 50) / ms(t_ort8, 50),
        "int8_agreement_on_random_inputs": q.agreement,
        "torch_eager_ms_p50": ms(t_torch, 50),
        "torch_eager_ms_p99": ms(t_torch, 99),
        "speedup_onnxruntime_vs_torch_p50": ms(t_torch, 50) / ms(t_ort, 50),
        "torch_plain_eager_ms_p50": ms(t_plain, 50),
        "speedup_onnxruntime_vs_plain_torch_p50": ms(t_plain, 50) / ms(t_ort, 50),
        "max_abs_logit_diff": diff,
        "torch_variant": "eager, inference_mode, channels_last; plain = no_grad, NCHW",
    }


def machine(packages: tuple[str, ...] = ("rtdecode", "numpy", "torch", "onnxruntime")) -> dict:
    import importlib.metadata as md

    def v(p):
        try:
            return md.version(p)
        except md.PackageNotFoundError:
            return None

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        "versions": {p: v(p) for p in packages},
    }


def run_offline_bench(out: Path, n_trials: int, n_units: int, size: int, calls: int) -> dict:
    result = {
        "machine": machine(),
        "neural_images": bench_neural_images(n_trials, n_units, size),
        "inference": bench_inference(size, calls),
        "inference_efficientnet_lite0": bench_inference(size, calls, backbone="efficientnet-lite0"),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return result
