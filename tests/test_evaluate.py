"""The paper's experiments end to end on three simulated animals, and the leakage rule."""

import json
from dataclasses import replace

import numpy as np
import pytest
from rtdecode.offline.dataset import load_animal
from rtdecode.offline.evaluate import default_combinations, parse_combination
from rtdecode.offline.experiments import split_images, wilson_interval
from typer.testing import CliRunner

from rtdecode.cli import app


@pytest.fixture(scope="module")
def report_dir(three_animals, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    args = [
        "evaluate",
        "--out",
        str(out),
        "--folds",
        "2",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--scheduler",
        "none",
        "--seed",
        "1",
    ]
    for a in three_animals:
        args += ["--sessions", str(a)]
    for combo in ("M1,M2:M0", "M0,M2:M1", "M0,M1:M2"):
        args += ["--combination", combo]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    print(result.output)
    return out


def test_report_has_every_number_with_confidence_intervals(report_dir):
    rep = json.loads((report_dir / "report.json").read_text())
    assert [w["animal"] for w in rep["within_animal"]] == ["M0", "M1", "M2"]
    for w in rep["within_animal"]:
        assert set(w["scores"]) == {
            "googlenet",
            "linear_image",
            "linear_image_pca",
            "glm",
            "temporal",
            "shuffled_labels",
            "stimulus_only",
        }
        for s in w["scores"].values():
            lo, hi = s["ci95"]
            assert 0 <= lo <= s["accuracy"] <= hi <= 1 and s["n_trials"] > 100
    assert len(rep["across_animal"]) == 3
    for a in rep["across_animal"]:
        assert set(a["scores"]) == {"googlenet", "linear_image", "linear_image_pca", "shuffled_labels", "stimulus_only"}
    assert rep["paper"]["glm_baseline"] == 0.83
    assert "without ImageNet weights" in rep["classifier"] and rep["pretrained_weights"] is False
    for fig in (
        "within_animal.png",
        "across_animal.png",
        "neural_image_embedding.png",
        "examples.png",
        "training_curves.png",
    ):
        assert (report_dir / fig).stat().st_size > 5000, fig
    md = (report_dir / "report.md").read_text()
    assert "## Reading" in md and "![within](within_animal.png)" in md and "No ImageNet weights" in md


def test_controls_sit_near_chance_and_glm_decodes(report_dir):
    rep = json.loads((report_dir / "report.json").read_text())
    controls = [
        s[m]["accuracy"]
        for s in [w["scores"] for w in rep["within_animal"]] + [a["scores"] for a in rep["across_animal"]]
        for m in ("shuffled_labels", "stimulus_only")
    ]
    print("control accuracies:", np.round(controls, 3))
    assert all(abs(c - 0.5) < 0.15 for c in controls)
    glm = [w["scores"]["glm"]["accuracy"] for w in rep["within_animal"]]
    print("GLM within-animal accuracies:", np.round(glm, 3))
    assert min(glm) > 0.65


def test_report_provenance_shows_no_leakage(report_dir):
    rep = json.loads((report_dir / "report.json").read_text())
    for w in rep["within_animal"]:
        for fold in w["folds"]:
            test = set(fold["test_trials"])
            for part in fold["test_images"] + fold["train_images"]:
                assert not test & set(part["ps_fit_trials"])
                assert not test & set(part["baseline_fit_trials"])
            for part in fold["train_images"]:  # cross-fitted: no image made with its own trial in PS
                assert not set(part["images_of_trials"]) & set(part["ps_fit_trials"])
    for a in rep["across_animal"]:
        assert not set(a["calibration_trials"]) & set(a["test_trials"])


def test_no_test_trial_contributes_to_what_scores_it(three_animals):
    """Replace every test trial's spikes by garbage: the PS, baseline, normalisation and training
    images used to score the fold must not change by a single bit."""
    ds = load_animal(three_animals[0], image_size=32)
    rng = np.random.default_rng(0)
    test = np.sort(rng.choice(ds.n_trials, ds.n_trials // 4, replace=False))
    train = np.setdiff1d(np.arange(ds.n_trials), test)
    a = split_images(ds, train, test, seed=3)
    resp, base = ds.response_rates.copy(), ds.baseline_rates.copy()
    resp[test] = rng.uniform(0, 500, resp[test].shape)
    base[test] = rng.uniform(0, 500, base[test].shape)
    b = split_images(replace(ds, response_rates=resp, baseline_rates=base), train, test, seed=3)
    np.testing.assert_array_equal(a.ps, b.ps)
    np.testing.assert_array_equal(a.baseline.mean, b.baseline.mean)
    np.testing.assert_array_equal(a.baseline.std, b.baseline.std)
    np.testing.assert_array_equal(a.train.images, b.train.images)
    assert a.normalisation == b.normalisation
    assert not np.array_equal(a.test.images, b.test.images)  # the scored trials themselves did change


def test_combinations():
    assert parse_combination("M0, M1:M2") == (("M0", "M1"), "M2")
    for bad in ("M0M1", "M0:M0", ":M1", "M0:"):
        with pytest.raises(ValueError, match="combination"):
            parse_combination(bad)
    combos = default_combinations(["A", "B", "C"])
    assert (("B", "C"), "A") in combos and (("A",), "B") in combos and len(combos) == 9


def test_wilson_interval():
    lo, hi = wilson_interval(50, 100)
    assert lo < 0.5 < hi and abs((hi - lo) - 0.19) < 0.01
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_linear_read_outs_of_the_neural_image_sit_beside_googlenet(report_dir):
    """report.json's ``linear_on_image``: per animal and per combination, GoogLeNet, logistic regression
    on the image pixels and on their principal components (and the GLM on R within animals), each with
    its interval, and the network's margin over the better linear read-out; report.md says it."""
    rep = json.loads((report_dir / "report.json").read_text())
    lin = rep["linear_on_image"]
    assert [e["animal"] for e in lin["within_animal"]] == ["M0", "M1", "M2"]
    assert [(e["train"], e["target"]) for e in lin["across_animal"]] == [
        (a["train"], a["target"]) for a in rep["across_animal"]
    ]
    for e, w in zip(lin["within_animal"], rep["within_animal"], strict=True):
        assert set(e) == {
            "animal",
            "googlenet",
            "linear_image",
            "linear_image_pca",
            "glm",
            "googlenet_minus_best_linear",
        }
        for m in ("googlenet", "linear_image", "linear_image_pca", "glm"):
            assert e[m]["accuracy"] == w["scores"][m]["accuracy"]
            lo, hi = e[m]["ci95"]
            assert lo <= e[m]["accuracy"] <= hi
        best = max(e["linear_image"]["accuracy"], e["linear_image_pca"]["accuracy"])
        assert e["googlenet_minus_best_linear"] == pytest.approx(e["googlenet"]["accuracy"] - best)
    within_linear = [e["linear_image_pca"]["accuracy"] for e in lin["within_animal"]]
    print("linear on image PCs, within:", np.round(within_linear, 3))
    assert min(within_linear) > 0.6  # the images carry the responses linearly: a linear read-out decodes
    md = (report_dir / "report.md").read_text()
    assert "linear on image PCs" in md and "best linear read-out" in md


def test_the_papers_protocol_sits_beside_ours_with_the_inflation(report_dir):
    """report.json's ``paper_protocol``: the same GoogLeNet on the same test trials with PS and baseline
    fit on all trials; each row holds both accuracies with intervals and the inflation in points."""
    rep = json.loads((report_dir / "report.json").read_text())
    pp = rep["paper_protocol"]
    assert [e["animal"] for e in pp["within_animal"]] == ["M0", "M1", "M2"]
    assert len(pp["across_animal"]) == len(rep["across_animal"])
    for e, w in zip(pp["within_animal"], rep["within_animal"], strict=True):
        assert e["leakage_free"]["accuracy"] == w["scores"]["googlenet"]["accuracy"]
        assert e["inflation_pp"] == pytest.approx(
            100 * (e["paper_protocol"]["accuracy"] - e["leakage_free"]["accuracy"])
        )
        lo, hi = e["paper_protocol"]["ci95"]
        assert lo <= e["paper_protocol"]["accuracy"] <= hi
    infl = [e["inflation_pp"] for e in pp["within_animal"] + pp["across_animal"]]
    print("inflation (pp):", np.round(infl, 1))
    md = (report_dir / "report.md").read_text()
    assert "## The paper's protocol beside ours" in md and "inflation (pp)" in md


def test_paper_protocol_images_carry_each_trials_own_stimulus(three_animals):
    """The leaky images are what the paper did: one PS and one baseline fit on every trial, each
    trial's image made with it (the leakage-free images never let a scored trial fit them)."""
    from rtdecode.offline.experiments import paper_protocol_images

    ds = load_animal(three_animals[0], image_size=32)
    imgs = paper_protocol_images(ds)
    assert imgs.images.shape == (ds.n_trials, 32 * 32)
    assert np.array_equal(imgs.ps_fit[0], np.arange(ds.n_trials))
    assert np.array_equal(imgs.baseline_fit, np.arange(ds.n_trials))


def test_the_learning_curve_says_how_many_calibration_trials_the_decoder_needs(report_dir):
    """report.json's ``learning_curve``: rows of calibration-trial count (and minutes) and accuracy,
    within each animal and across for each target, on growing stratified subsets; a figure and a table."""
    rep = json.loads((report_dir / "report.json").read_text())
    rows = rep["learning_curve"]
    within = [r for r in rows if r["setting"] == "within"]
    across = [r for r in rows if r["setting"] == "across"]
    assert sorted({r["animal"] for r in within}) == ["M0", "M1", "M2"]
    assert sorted({r["target"] for r in across}) == ["M0", "M1", "M2"]
    for key, group in [(a, [r for r in within if r["animal"] == a]) for a in ("M0", "M1", "M2")]:
        n = [r["calibration_trials"] for r in group]
        assert n == sorted(n) and len(n) >= 3 and n[0] >= 16, (key, n)
        assert len({r["n_test"] for r in group}) == 1  # the same test trials at every size
        for r in group:
            lo, hi = r["ci95"]
            assert lo <= r["accuracy"] <= hi and r["calibration_minutes"] > 0
    print(
        {(r["setting"], r.get("animal") or r["target"], r["calibration_trials"]): round(r["accuracy"], 3) for r in rows}
    )
    assert (report_dir / "learning_curve.png").stat().st_size > 5000
    assert "## How long to calibrate" in (report_dir / "report.md").read_text()
