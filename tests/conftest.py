"""Shared fixtures: simulated animals (the foundation of every test), test tiers.

Tiers (Kilosort-style flags): ``--runslow`` runs tests marked ``slow``; tests marked ``gpu`` run
only where an NVIDIA GPU and TensorRT are importable, tests marked ``cuda`` where torch sees a CUDA
GPU, and both are skipped with the reason otherwise. The simulator is imported inside the fixtures
that use it, so the ``cuda`` tests run on a GPU machine that has torch and numpy but not the
project's other dependencies (``tools/gpu_check.sh``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def _gpu_reason() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except Exception as err:  # ImportError, or the PyPI stub failing to find its libraries
        return f"TensorRT is not importable here ({type(err).__name__}: {err})"
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU is visible (torch.cuda.is_available() is False)"
    except Exception as err:
        return f"cannot query the GPU ({err})"
    return None


def _cuda_reason() -> str | None:
    try:
        import torch
    except Exception as err:
        return f"torch is not importable ({type(err).__name__}: {err})"
    if not torch.cuda.is_available():
        return f"no CUDA GPU is visible to torch {torch.__version__} (torch.cuda.is_available() is False)"
    return None


def pytest_collection_modifyitems(config, items):
    gpu_reason = _gpu_reason()
    cuda_reason = _cuda_reason() if any("cuda" in item.keywords for item in items) else None
    for item in items:
        if "cuda" in item.keywords and cuda_reason:
            item.add_marker(pytest.mark.skip(reason=cuda_reason))
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(pytest.mark.skip(reason="slow test: run with --runslow"))
        if "gpu" in item.keywords and gpu_reason:
            item.add_marker(pytest.mark.skip(reason=gpu_reason))


@pytest.fixture(scope="session")
def small_animal(tmp_path_factory) -> Path:
    """One animal with a 30 kHz recording: 16 channels, 20 units, 1 repeat (~65 s of data)."""
    out = tmp_path_factory.mktemp("sim_small")
    from rtdecode.offline.sim.simulate import SimulationParams, simulate

    params = SimulationParams(animals=1, channels=16, units=20, repeats=1, seed=7)
    return simulate(params, out)[0]


@pytest.fixture(scope="session")
def realism_animal(tmp_path_factory) -> Path:
    """One animal without a recording, 48 units and 3 repeats, for response statistics."""
    out = tmp_path_factory.mktemp("sim_realism")
    from rtdecode.offline.sim.simulate import SimulationParams, simulate

    params = SimulationParams(animals=1, channels=32, units=48, repeats=3, seed=3, write_recording=False)
    return simulate(params, out)[0]


def free_port_pair(exclude: tuple[int, ...] = ()) -> int:
    """A loopback port p such that p and p + 1 are both free (ZMQ Interface data + heartbeat)."""
    import socket

    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p >= 65000 or {p - 1, p, p + 1} & set(exclude):
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue


def manifest(folder: Path) -> dict:
    return json.loads((folder / "animal.json").read_text())


@pytest.fixture(scope="session")
def three_animals(tmp_path_factory) -> list[Path]:
    """Three small animals with recordings (16 channels, 24 units, 1 repeat)."""
    out = tmp_path_factory.mktemp("sim_three")
    from rtdecode.offline.sim.simulate import SimulationParams, simulate

    params = SimulationParams(animals=3, channels=16, units=24, repeats=1, seed=2)
    return simulate(params, out)


@pytest.fixture(scope="session")
def bundle(three_animals, tmp_path_factory) -> Path:
    """A decoder bundle for M2 from its own session (M0, M1 as extra training data; ground-truth templates,
    tiny network input, random-init GoogLeNet)."""
    from rtdecode.offline.build import BuildConfig, build_bundle
    from rtdecode.offline.dataset import load_animal
    from rtdecode.offline.parallel import Executor

    out = tmp_path_factory.mktemp("bundles") / "M2.bundle"
    work = tmp_path_factory.mktemp("build_work")
    cfg = BuildConfig(templates="ground-truth", image_size=32, epochs=2, seed=0, folds=3)
    with Executor("none") as ex:
        train = [load_animal(p, cfg.image_size) for p in three_animals[:2]]
        build_bundle(train, {d.name: d for d in train}, three_animals[2], out, cfg, ex, work, log=lambda *a: None)
    return out


@pytest.fixture(scope="session")
def two_sessions(tmp_path_factory) -> tuple[Path, Path]:
    """One animal recorded twice (16 channels, 24 units, 2 repeats): calibrate on the first session,
    decode the second -- the lab's workflow."""
    out = tmp_path_factory.mktemp("sim_sessions")
    from rtdecode.offline.sim.simulate import SimulationParams, simulate

    params = SimulationParams(animals=1, channels=16, units=24, repeats=2, seed=11, sessions=2)
    first = simulate(params, out)[0]
    return first, first.parent / f"{first.name}-s2"


@pytest.fixture(scope="session")
def lab_bundle(two_sessions, tmp_path_factory) -> Path:
    """The linear decoder built from the first session alone, as ``rtdecode build --target`` does."""
    from rtdecode.offline.build import BuildConfig, build_bundle

    out = tmp_path_factory.mktemp("lab_bundle") / "lab.bundle"
    cfg = BuildConfig(templates="ground-truth", image_size=32, seed=0, decoder="linear", folds=3)
    build_bundle([], {}, two_sessions[0], out, cfg, None, tmp_path_factory.mktemp("lab_work"), log=lambda *a: None)
    return out
