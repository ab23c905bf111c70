#!/usr/bin/env bash
# GPU check for rtdecode, one script, under 8 minutes on a fresh NVIDIA machine that has Python and
# torch (with CUDA) but none of this project's other dependencies.
#
#   tools/gpu_check.sh [--wheels DIR]     run the checks (no network needed)
#   tools/gpu_check.sh --fetch-wheels DIR download, on a machine with PyPI, the wheels it can use
#                                          (pytest, onnxruntime, onnx; CPython 3.12, x86_64 Linux)
#
# 1. a venv that sees the machine's torch (--system-site-packages); wheels from DIR, if given,
#    are installed into it without the network (pytest for the tests, onnxruntime for the logit
#    comparison); whatever is missing is skipped, with the reason, never estimated;
# 2. the `cuda`- and `gpu`-marked tests (tests/test_gpu.py needs torch, torchvision and pytest;
#    the TensorRT test needs tensorrt and the project's dependencies and says so when absent);
# 3. tools/gpu_check.py: GoogLeNet 1x3x224x224 latency p50/p99 through the torch-cuda backend in
#    fp16 and fp32 (CUDA graphs) and fp16 eager, and the largest logit difference to ONNX Runtime
#    on the CPU. Results in $OUT/gpu_check.json (OUT defaults to ./gpu_check_out).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-$PWD/gpu_check_out}
export OUT
WHEELS=""
if [[ "${1:-}" == "--fetch-wheels" ]]; then
    dir=${2:?usage: tools/gpu_check.sh --fetch-wheels DIR}
    "$PY" -m pip download --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        -d "$dir" pytest onnxruntime onnx && "$PY" -m pip download --no-deps -d "$dir" efficientnet-lite-pytorch
    exit $?
fi
if [[ "${1:-}" == "--wheels" ]]; then
    WHEELS=${2:?usage: tools/gpu_check.sh --wheels DIR}
fi
mkdir -p "$OUT"
start=$(date +%s)
echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not found"
"$PY" -c 'import sys, platform; print("python", platform.python_version())'

VENV=${VENV:-/tmp/rtdecode-gpu-venv}
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PY" -m venv --system-site-packages "$VENV" || { echo "cannot make a venv; using $PY as it is"; VENV=""; }
fi
VPY=${VENV:+$VENV/bin/python}
VPY=${VPY:-$PY}
if [[ -n "$WHEELS" ]]; then
    echo "== installing from $WHEELS (no network)"
    "$VPY" -m pip install -q --no-index --find-links "$WHEELS" pytest onnxruntime onnx efficientnet-lite-pytorch 2>&1 | tail -3 \
        || echo "some wheels did not install; what needs them is skipped"
fi

echo "== tests marked cuda / gpu"
if "$VPY" -c 'import pytest' 2>/dev/null; then
    files="tests/test_gpu.py"
    if "$VPY" -c 'import rtdecode.offline.sim.simulate' 2>/dev/null; then
        files="tests"  # the whole project is importable: every gpu/cuda-marked test
    fi
    PYTHONPATH=$PWD timeout 300 "$VPY" -m pytest -q -p no:cacheprovider -o addopts="-ra" -m "cuda or gpu" $files \
        2>&1 | tee "$OUT/gpu_tests.txt" | tail -25
    echo "pytest exit code ${PIPESTATUS[0]}" | tee -a "$OUT/gpu_tests.txt"
else
    echo "skipped: pytest is not importable here (give its wheel with --wheels DIR)" | tee "$OUT/gpu_tests.txt"
fi

echo "== latency and parity"
PYTHONPATH=$PWD timeout 300 "$VPY" tools/gpu_check.py 2>&1 | tee "$OUT/gpu_check.txt" | tail -60
echo "== done in $(( $(date +%s) - start )) s; results in $OUT"
