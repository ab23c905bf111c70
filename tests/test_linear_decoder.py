"""``rtdecode build --decoder linear``: the linear read-out of neural images as a bundle's decoder,
folded into one layer, exported to ONNX like GoogLeNet, run by the same backends and the daemon."""

import json

import numpy as np
import pandas as pd
import pytest
from rtdecode.offline.bench.session import replay_through_daemon
from rtdecode.offline.classifiers import LinearImageClassifier
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from rtdecode.bundle import Bundle
from rtdecode.cli import app
from rtdecode.inference.select import make_backend

from .test_online import rig


@pytest.fixture(scope="module")
def linear_bundle(two_sessions, tmp_path_factory):
    """``rtdecode build --target`` on the first session, from the command line."""
    out = tmp_path_factory.mktemp("linear") / "linear.bundle"
    args = ["build", "--target", str(two_sessions[0]), "--out", str(out), "--image-size", "32", "--folds", "3"]
    args += ["--templates", "ground-truth", "--decoder", "linear", "--scheduler", "none"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("pcs", [None, 5])
def test_the_folded_layer_is_the_fitted_regression(pcs):
    rng = np.random.default_rng(pcs or 0)
    x = rng.normal(0, 1, (120, 3, 16, 16)).astype(np.float32)
    x[:, :, 3, 4] = 0.25  # a constant pixel (zero variance)
    y = (x[:, 0, :8].mean(axis=(1, 2)) > 0).astype(int)
    model, _ = LinearImageClassifier(16, pcs=pcs, seed=0).fit(x, y)
    steps = [StandardScaler()] + ([PCA(pcs, random_state=0)] if pcs else [])
    steps.append(LogisticRegression(C=1.0 if pcs else 0.05, max_iter=5000, random_state=0))
    ref = make_pipeline(*steps).fit(x[:, 0].reshape(120, -1).astype(np.float64), y)
    test = rng.normal(0, 1, (40, 3, 16, 16)).astype(np.float32)
    want = ref.predict_proba(test[:, 0].reshape(40, -1).astype(np.float64))[:, 1]
    import torch

    with torch.no_grad():
        got = torch.softmax(model(torch.from_numpy(test)), 1)[:, 1].numpy()
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_a_linear_bundle_says_what_it_holds_and_runs_on_every_cpu_backend(linear_bundle):
    m = json.loads((linear_bundle / "manifest.json").read_text())
    assert m["architecture"]["name"] == "linear" and m["architecture"]["pcs"] == 20
    assert "linear read-out" in m["classifier"]
    rep = json.loads((linear_bundle / "report.json").read_text())
    assert m["heldout_accuracy"] == rep["heldout"]["accuracy"] and rep["heldout"]["ci95"][0] > 0.6
    info = CliRunner().invoke(app, ["bundle", "info", str(linear_bundle)])
    assert info.exit_code == 0 and "name: linear" in info.output and "linear read-out" in info.output
    b = Bundle.load(linear_bundle)
    ort, ref = make_backend("onnxruntime", b), make_backend("torch", b)
    x = np.random.default_rng(0).normal(0, 1, ort.input_shape).astype(np.float32)
    np.testing.assert_allclose(ort.infer(x), ref.infer(x), atol=1e-4)
    assert ort.infer(x)[0, 0] == 0.0  # the artificial logit is the reference: p(natural) = sigmoid(w.x + b)


@pytest.mark.slow  # a 68 s session served at 4x
def test_serve_decodes_the_second_session_end_to_end_with_the_linear_bundle(linear_bundle, two_sessions, tmp_path):
    """The daemon, fed the never-calibrated session 2 by the replayer, decides every onset, above a
    seeded floor (the Wilson interval's lower bound)."""
    from rtdecode.scoring import score_decisions

    target = two_sessions[1]
    cfg = rig(16, tmp_path)
    res = replay_through_daemon(linear_bundle, target / "recording", cfg, tmp_path / "d.jsonl", speed=4.0)
    stim = pd.read_csv(target / "stimulus_log.csv")
    assert sorted(d["onset_sample"] for d in res.decisions) == sorted(stim.onset_sample.tolist())
    assert res.status["counters"]["internal_errors"] == 0
    s = score_decisions(res.decisions, stim.set_index("onset_sample").label)
    print(f"linear bundle online on session 2: {s}")
    assert s["n"] >= stim.label.isin(["natural", "artificial"]).sum() - 1
    assert s["ci95"][0] > 0.6
