#!/usr/bin/env bash
# GPU check for rtdecode, one script, under 8 minutes on a fresh NVIDIA machine that has Python and
# torch (with CUDA) but none of this project's other dependencies.
#
#   tools/gpu_check.sh [--wheels DIR]     run the checks (no network needed)
#   tools/gpu_check.sh --fetch-wheels DIR download, on a machine with PyPI, the wheels it can use
#                                          (pytest, onnxruntime, efficientnet-lite-pytorch, torchvision;
#                                          CPython 3.12, x86_64 Linux)
#
# 1. the machine's Python and torch; wheels from DIR, if given, are installed into a folder of
#    their own (first on PYTHONPATH) without the network (pytest for the tests, onnxruntime for the logit
#    comparison); whatever is missing is skipped, with the reason, never estimated;
# 2. the `cuda`- and `gpu`-marked tests (tests/test_gpu.py needs torch, torchvision and pytest;
#    the TensorRT test needs tensorrt and the project's dependencies and says so when absent);
# 3. tools/gpu_check.py: GoogLeNet 1x3x224x224 latency p50/p99 through the torch-cuda backend in
#    fp16 and fp32 (CUDA graphs) and fp16 eager, EfficientNet-Lite0 in fp16 and fp32 (CUDA graphs),
#    and GoogLeNet's largest logit difference to ONNX Runtime
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
        -d "$dir" pytest onnxruntime && "$PY" -m pip download --no-deps -d "$dir" efficientnet-lite-pytorch \
        && "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 -d "$dir" "torchvision==${TORCHVISION:-0.29.1}"
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

# The machine's own Python keeps its torch (a venv may not see it: it can live in the user site);
# the wheels go to a folder of their own, put first on PYTHONPATH.
VPY=$PY
EXTRA=${EXTRA:-/tmp/rtdecode-gpu-extra}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ -n "$WHEELS" ]]; then
    echo "== installing from $WHEELS (no network) into $EXTRA"
    for pkg in pytest onnxruntime; do
        "$PY" -m pip install -q --no-index --find-links "$WHEELS" --target "$EXTRA" "$pkg" 2>&1 | tail -2 \
            || echo "$pkg did not install; what needs it is skipped"
    done
    "$PY" -m pip install -q --no-index --no-deps --find-links "$WHEELS" --target "$EXTRA" efficientnet-lite-pytorch \
        2>&1 | tail -2  # it names torch as a dependency; the machine's is used
    rm -rf "$EXTRA"/numpy "$EXTRA"/numpy-* "$EXTRA"/numpy.libs  # the machine's numpy stays (its torch's)
    export PYTHONPATH="$PWD:$EXTRA"
    if ! "$VPY" -c 'import torchvision' 2>/dev/null && ls "$WHEELS"/torchvision-*.whl >/dev/null 2>&1; then
        echo "== torchvision missing: trying the wheel in $WHEELS (no deps; it must match this torch)"
        "$PY" -m pip install -q --no-index --no-deps --target "$EXTRA" "$WHEELS"/torchvision-*.whl 2>&1 | tail -3
    fi
fi

echo "== tests marked cuda / gpu"
if "$VPY" -c 'import pytest' 2>/dev/null; then
    files="tests/test_gpu.py"
    if "$VPY" -c 'import rtdecode.offline.sim.simulate' 2>/dev/null; then
        files="tests"  # the whole project is importable: every gpu/cuda-marked test
    fi
    timeout 300 "$VPY" -m pytest -q -p no:cacheprovider -o addopts="-ra" -m "cuda or gpu" $files \
        2>&1 | tee "$OUT/gpu_tests.txt" | tail -25
    echo "pytest exit code ${PIPESTATUS[0]}" | tee -a "$OUT/gpu_tests.txt"
else
    echo "skipped: pytest is not importable here (give its wheel with --wheels DIR)" | tee "$OUT/gpu_tests.txt"
fi

echo "== latency and parity"
timeout 300 "$VPY" tools/gpu_check.py 2>&1 | tee "$OUT/gpu_check.txt" | tail -60
echo "== done in $(( $(date +%s) - start )) s; results in $OUT"
