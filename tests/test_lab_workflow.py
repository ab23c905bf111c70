"""The lab's workflow: a bundle built from an animal's own labelled first session decodes its second,
never-calibrated session -- on the training images' scale, above a seeded floor, with probabilities
calibrated on held-out trials and applied by the decoder."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rtdecode.bundle import Bundle
from rtdecode.cli import app
from rtdecode.decode import decode_recording
from rtdecode.pipeline import OnlinePipeline, rig_config_for_bundle
from rtdecode.stream.recording import RecordingSource


@pytest.fixture(scope="module")
def session2_log(lab_bundle, two_sessions, tmp_path_factory):
    out = tmp_path_factory.mktemp("decode") / "s2.jsonl"
    result = CliRunner().invoke(
        app, ["decode", str(two_sessions[1] / "recording"), "--bundle", str(lab_bundle), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def _labels(animal):
    m = json.loads((animal / "animal.json").read_text())
    return pd.read_csv(animal / m["stimulus_log"]).set_index("onset_sample").label


def test_the_bundle_is_trained_on_the_targets_own_session_and_says_how_it_was_calibrated(lab_bundle, two_sessions):
    m = json.loads((lab_bundle / "manifest.json").read_text())
    rep = json.loads((lab_bundle / "report.json").read_text())
    n_trials = int(_labels(two_sessions[0]).isin(["natural", "artificial"]).sum())
    assert m["train_sessions"] == [] and m["calibration"]["n_trials"] == n_trials
    assert m["calibration"]["spikes"] == "online" and m["calibration"]["folds"] == 3
    assert rep["workflow"].startswith("trained on the target's own labelled calibration session")
    assert set(rep["heldout_by_spikes"]) == {"online", "sorter"}  # both held-out accuracies, as the issue asks
    assert rep["heldout"]["n_trials"] == n_trials  # every calibration trial held out once
    pc = m["probability"]
    assert pc["method"] == "temperature" and pc["temperature"] > 0
    # temperature scaling minimises the log loss, not the Brier score: Brier moves little either way
    # (measured 0.159 -> 0.160 on this bundle, 0.164 -> 0.159 on the demo's)
    assert pc["brier_after"] <= pc["brier_before"] + 0.01
    assert (lab_bundle / "calibration.png").stat().st_size > 5000
    assert rep["sorting"]["online_matcher_vs_ground_truth"]["mean_accuracy"] > 0.5


def test_calibration_and_second_session_images_are_on_one_scale(session2_log, lab_bundle):
    """The images ``rtdecode decode`` forms on session 2 have the std of the images the decoder trained on."""
    stop = session2_log[-1]
    assert stop["event"] == "stop"
    scale = stop["image_scale"]
    assert scale["trials"] > 400
    assert scale["training_std"] == pytest.approx(
        json.loads((lab_bundle / "manifest.json").read_text())["normalisation"]["std"]
    )
    assert 0.9 <= scale["ratio"] <= 1.1, scale
    for row in json.loads((lab_bundle / "report.json").read_text())["image_scale"]:
        assert 0.85 <= row["ratio"] <= 1.15, row  # each calibration fold, ~160 held-out trials


def test_a_never_calibrated_session_is_decoded_above_a_seeded_floor(session2_log, two_sessions, lab_bundle):
    """Session 2 decoded above chance (seed 11: 16 channels, 24 units, 2 repeats -- a small animal, ~65 %),
    as well as the cross-validated estimate on session 1 promised, with probabilities better than a coin."""
    from rtdecode.scoring import score_decisions

    decisions = [r for r in session2_log if "seq" in r]
    labels = _labels(two_sessions[1])
    s = score_decisions(decisions, labels)
    promised = json.loads((lab_bundle / "report.json").read_text())["heldout"]["accuracy"]
    print(s, "held-out on session 1:", promised)
    assert s["n"] == int(labels.isin(["natural", "artificial"]).sum())  # every labelled onset decided ok
    # measured 311/476 (65.3 %) with the tracker's reference predicted from the templates, 306/476
    # (64.3 %) with the calibration's own peaks: the CI's lower bound sat at 0.60-0.61, where five
    # trials move it across 0.6; 0.55 still says clearly above chance
    assert s["ci95"][0] > 0.55
    assert abs(s["accuracy"] - promised) < 0.08  # the offline estimate holds on a new session
    assert s["brier"] < 0.25
    assert 0.35 < s["natural_share_predicted"] < 0.65  # not one-sided


def test_the_decoder_applies_the_bundles_temperature(lab_bundle, two_sessions):
    """Decisions carry the calibrated p(natural): with the temperature undone, every trial's log-odds are
    the calibrated log-odds times the temperature."""
    bundle = Bundle.load(lab_bundle)
    t = bundle.manifest.probability.temperature
    assert abs(t - 1.0) > 1e-3

    def p_natural(temperature):
        pipe = OnlinePipeline(bundle, rig_config_for_bundle(bundle), log=lambda *a: None)
        pipe.decoder.temperature = temperature
        src = RecordingSource(two_sessions[1] / "recording")
        return np.array([d.probabilities["natural"] for d in decode_recording(pipe, src) if d.ok])

    cal, raw = p_natural(t), p_natural(1.0)
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    keep = (raw > 1e-6) & (raw < 1 - 1e-6)
    np.testing.assert_allclose(logit(cal[keep]) * t, logit(raw[keep]), rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def efficientnet_bundle(two_sessions, tmp_path_factory):
    out = tmp_path_factory.mktemp("eff") / "eff.bundle"
    args = ["build", "--target", str(two_sessions[0]), "--out", str(out), "--image-size", "32", "--folds", "3"]
    args += ["--templates", "ground-truth", "--backbone", "efficientnet-lite0", "--scheduler", "none"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow  # an EfficientNet bundle built and a 68 s session served at 4x
def test_an_efficientnet_bundle_is_pretrained_and_served_end_to_end(efficientnet_bundle, two_sessions, tmp_path):
    """``rtdecode build --backbone efficientnet-lite0``: ImageNet weights, the same ONNX export and parity,
    every CPU backend rebuilds it, and ``serve`` decides every onset of session 2."""
    from rtdecode.offline.bench.session import replay_through_daemon

    from rtdecode.inference.select import make_backend
    from rtdecode.scoring import score_decisions

    from .test_online import rig

    m = json.loads((efficientnet_bundle / "manifest.json").read_text())
    assert m["architecture"] == {
        "name": "efficientnet-lite0",
        "tap": "block4",
        "grid": 4,
        "pretrained": True,
    }
    assert "ImageNet weights" in m["classifier"]
    b = Bundle.load(efficientnet_bundle)
    ort, ref = make_backend("onnxruntime", b), make_backend("torch", b)
    x = np.random.default_rng(0).normal(0, 1, ort.input_shape).astype(np.float32)
    np.testing.assert_allclose(ort.infer(x), ref.infer(x), atol=1e-4, rtol=1e-4)
    target = two_sessions[1]
    res = replay_through_daemon(
        efficientnet_bundle, target / "recording", rig(16, tmp_path), tmp_path / "d.jsonl", speed=4.0
    )
    stim = pd.read_csv(target / "stimulus_log.csv")
    assert sorted(d["onset_sample"] for d in res.decisions) == sorted(stim.onset_sample.tolist())
    s = score_decisions(res.decisions, stim.set_index("onset_sample").label)
    print(f"EfficientNet-Lite0 bundle online on session 2: {s}")
    assert s["ci95"][0] > 0.5  # above chance (32 px and a small animal: ~60 %; the demo's animal: ~80 %)
