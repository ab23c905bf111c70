"""The paper's experiments end to end on three simulated animals, the leakage rule, one image scale,
and the statistics behind every comparison (each test here fails when its property breaks)."""

import json
from dataclasses import replace

import numpy as np
import pytest
from rtdecode.offline.dataset import load_animal
from rtdecode.offline.evaluate import default_combinations, parse_combination
from rtdecode.offline.experiments import (
    paper_protocol_images,
    self_term_images,
    split_images,
    wilson_interval,
)
from typer.testing import CliRunner

from rtdecode.cli import app
from rtdecode.core.neural_image import neural_images, preferred_stimuli_from_conditions
from rtdecode.core.responses import BaselineStats

NETWORKS = {"googlenet", "efficientnet_lite0", "efficientnet_lite0_random"}


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


@pytest.fixture(scope="module")
def report(report_dir):
    return json.loads((report_dir / "report.json").read_text())


def test_report_has_every_number_with_confidence_intervals(report, report_dir):
    assert [w["animal"] for w in report["within_animal"]] == ["M0", "M1", "M2"]
    for w in report["within_animal"]:
        assert set(w["scores"]) == NETWORKS | {
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
    assert len(report["across_animal"]) == 3
    for a in report["across_animal"]:
        assert set(a["scores"]) == NETWORKS | {"linear_image", "linear_image_pca", "shuffled_labels", "stimulus_only"}
    assert report["paper"]["glm_baseline"] == 0.83
    assert "without ImageNet weights" in report["classifier"] and report["pretrained_weights"] is False
    nets = {n["model"]: n["pretrained"] for n in report["networks"]}
    assert nets == {"googlenet": False, "efficientnet_lite0": True, "efficientnet_lite0_random": False}
    for fig in (
        "within_animal.png",
        "across_animal.png",
        "neural_image_embedding.png",
        "examples.png",
        "training_curves.png",
        "learning_curve.png",
        "reliability.png",
    ):
        assert (report_dir / fig).stat().st_size > 5000, fig
    md = (report_dir / "report.md").read_text()
    assert "## Reading" in md and "![within](within_animal.png)" in md and "No GoogLeNet ImageNet weights" in md
    assert "## Statistics" in md and "exact McNemar" in md


def test_balanced_and_per_class_accuracy_and_the_confusion_matrix_agree_with_the_predictions(report):
    """Every score's summary is recomputed here from ``predictions`` (trial by trial), and the two must agree."""
    pred = report["predictions"]
    model = np.asarray(pred["model"])
    animal = np.asarray(pred["animal"])
    setting = np.asarray(pred["setting"])
    for w in report["within_animal"]:
        for m, s in w["scores"].items():
            rows = (model == m) & (animal == w["animal"]) & (setting == "within")
            y = np.asarray(pred["label"])[rows]
            yhat = np.asarray(pred["p_natural"])[rows] >= 0.5
            assert rows.sum() == s["n_trials"] == len(set(np.asarray(pred["trial"])[rows]))
            recall = [float((yhat[y == c] == c).mean()) for c in (0, 1)]
            assert s["per_class_accuracy"]["artificial"] == pytest.approx(recall[0])
            assert s["per_class_accuracy"]["natural"] == pytest.approx(recall[1])
            assert s["balanced_accuracy"] == pytest.approx(np.mean(recall))
            counts = np.asarray(s["confusion"]["counts"])
            assert counts.sum() == s["n_trials"] and counts[1].sum() == y.sum()
            assert s["majority_baseline"] == pytest.approx(max(y.mean(), 1 - y.mean()))


def test_controls_are_not_above_the_majority_baseline_and_the_glm_decodes(report):
    """A control significantly above the majority baseline (one-sided binomial p < 0.01) fails -- a
    14-point leak on these ~240 trials has p < 1e-4."""
    controls = [
        (where, m, s[m])
        for where, s in [(w["animal"], w["scores"]) for w in report["within_animal"]]
        + [(a["target"], a["scores"]) for a in report["across_animal"]]
        for m in ("shuffled_labels", "stimulus_only")
    ]
    for where, m, c in controls:
        assert c["p_vs_majority"] > 0.01, (where, m, c["accuracy"])
    glm = [w["scores"]["glm"] for w in report["within_animal"]]
    assert all(g["p_vs_majority"] < 1e-6 for g in glm), [g["accuracy"] for g in glm]


def test_report_provenance_is_the_folds_the_splitter_makes(report, three_animals):
    """The provenance in report.json is checked against folds recomputed here, not against itself: each
    fold's test trials are those of ``splits.folds`` for the report's seed, and nothing that fit a PS or a
    baseline is one of them."""
    from rtdecode.offline.splits import folds

    for w, animal in zip(report["within_animal"], three_animals, strict=True):
        ds = load_animal(animal, image_size=32)
        expected = folds(ds, 2, "trial", seed=1)
        assert [f["test_trials"] for f in w["folds"]] == [te.tolist() for _, te in expected]
        for fold, (tr, _) in zip(w["folds"], expected, strict=True):
            for part in fold["test_images"] + fold["train_images"]:
                assert set(part["ps_fit_trials"]) <= set(tr.tolist())
                assert set(part["baseline_fit_trials"]) <= set(tr.tolist())


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


def test_training_and_scored_images_are_on_one_scale(realism_animal, report):
    """Scored images (PS of the whole fit set) and training images (leave-one-out PS) have the same std
    within 0.9-1.1 on a seeded animal; the paper's sum-PS with half-set cross-fitting, which the
    builder used before, does not (the test can fail)."""
    ds = load_animal(realism_animal, image_size=32)
    rng = np.random.default_rng(5)
    test = np.sort(rng.choice(ds.n_trials, ds.n_trials // 3, replace=False))
    train = np.setdiff1d(np.arange(ds.n_trials), test)
    ratio = split_images(ds, train, test, seed=0).scale["ratio"]
    assert 0.9 <= ratio <= 1.1, ratio
    # The old way: PS as a sum, training images from a PS of half the training set.
    R, _ = ds.responses(train)
    half = train[::2]
    other = train[1::2]
    old_train = neural_images(R[other], preferred_stimuli_from_conditions(R[half], ds.condition[half], ds.stack))
    old_train *= len(half)
    old_test = neural_images(R[test], preferred_stimuli_from_conditions(R[train], ds.condition[train], ds.stack))
    old_test *= len(train)
    assert old_test.std() / old_train.std() > 1.2
    rows = report["image_scale"]
    assert len(rows) == 3 * 2 + 3  # every fold of every animal, every combination
    for r in rows:
        assert 0.85 <= r["ratio"] <= 1.15, r  # ~120 scored trials per fold: the std itself varies a little


def test_self_term_only_images_differ_from_ours_only_by_the_scored_trial_in_its_own_fit(three_animals):
    """Each ``self_term_only`` image equals the image made by brute force with the baseline and PS fit on
    the fit set plus that one trial."""
    ds = load_animal(three_animals[1], image_size=32)
    rng = np.random.default_rng(1)
    scored = np.sort(rng.choice(ds.n_trials, 40, replace=False))
    fit = np.setdiff1d(np.arange(ds.n_trials), scored)
    got = self_term_images(ds, fit, scored)
    for k in (0, 13, 39):
        f2 = np.append(fit, scored[k])
        R = BaselineStats.fit(ds.baseline_rates, f2).normalise(ds.response_rates)
        want = neural_images(R[scored[k]], preferred_stimuli_from_conditions(R[f2], ds.condition[f2], ds.stack))[0]
        np.testing.assert_allclose(got[k], want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    ours = split_images(ds, fit, scored, seed=0).test.images
    assert not np.allclose(got, ours)


def test_a_planted_leak_is_flagged_by_the_stimulus_only_control_under_the_papers_protocol(three_animals):
    """Responses that carry nothing (independent noise, 600 units): images formed with shuffled responses
    must be at chance leakage-free, and far above it when every scored trial is in its own PS (the paper's
    protocol) -- the control can see a leak when there is one."""
    from rtdecode.offline.classifiers import NetworkClassifier
    from rtdecode.offline.statistics import Score
    from sklearn.model_selection import StratifiedKFold

    from rtdecode.core.model_input import ImageNormalisation

    ds = load_animal(three_animals[2], image_size=32)
    rng = np.random.default_rng(0)
    units = 600
    noise = replace(
        ds,
        unit_ids=np.arange(units),
        response_rates=rng.normal(20, 5, (ds.n_trials, units)).astype(np.float32),
        baseline_rates=rng.normal(20, 5, (ds.n_trials, units)).astype(np.float32),
    )
    net = NetworkClassifier(image_size=32, backbone="efficientnet-lite0", head_epochs=100)
    leaky = paper_protocol_images(noise, shuffle_responses=True).images
    scores = {"paper": Score("paper"), "ours": Score("ours")}
    for k, (tr, te) in enumerate(StratifiedKFold(2, shuffle=True, random_state=0).split(leaky, noise.labels)):
        norm = ImageNormalisation.fit(leaky[tr], 32)
        p = net.fit_predict(norm.to_model_input(leaky[tr]), noise.labels[tr], norm.to_model_input(leaky[te]))
        scores["paper"].add(te, noise.labels[te], p.p_natural, k)
        s = split_images(noise, tr, te, seed=0, shuffle_responses=True)
        n = s.normalisation
        p = net.fit_predict(n.to_model_input(s.train.images), noise.labels[tr], n.to_model_input(s.test.images))
        scores["ours"].add(te, noise.labels[te], p.p_natural, k)
    paper, ours = scores["paper"].as_dict(), scores["ours"].as_dict()
    print({k: round(v.accuracy, 3) for k, v in scores.items()})
    assert paper["accuracy"] > 0.75 and paper["p_vs_majority"] < 1e-6
    assert ours["p_vs_majority"] > 0.01


def test_the_papers_protocol_splits_its_inflation_into_the_leak_and_the_rest(report, report_dir):
    pp = report["paper_protocol"]
    assert pp["network"] == "googlenet"
    assert [e["animal"] for e in pp["within_animal"]] == ["M0", "M1", "M2"]
    assert len(pp["across_animal"]) == len(report["across_animal"])
    for e, w in zip(pp["within_animal"], report["within_animal"], strict=True):
        assert e["leakage_free"]["accuracy"] == w["scores"]["googlenet"]["accuracy"]
        assert e["inflation_pp"] == pytest.approx(e["self_term_pp"] + e["rest_pp"])
        for key in ("paper_protocol", "self_term_only", "stimulus_only_paper_protocol"):
            assert e[key]["n_trials"] == w["scores"]["googlenet"]["n_trials"]
    families = {t["family"] for t in report["paired_tests"]}
    assert {"paper protocol vs ours", "self-term leak vs ours", "paper protocol vs self-term leak"} <= families
    md = (report_dir / "report.md").read_text()
    assert "## The paper's protocol beside ours" in md and "leak (pp)" in md


def test_every_stated_comparison_has_a_paired_test(report):
    """Each network against each linear read-out, pretrained against random-init, the network against the
    GLM: one exact McNemar test per animal and combination, whose counts are those of the predictions."""
    tests = report["paired_tests"]
    wheres = [("within", w["animal"]) for w in report["within_animal"]] + [
        ("across", a["target"]) for a in report["across_animal"]
    ]
    for setting, name in wheres:
        mine = [t for t in tests if t["setting"] == setting and (t.get("animal") or t.get("target")) == name]
        pairs = {(t["a"], t["b"]) for t in mine}
        for net in NETWORKS:
            assert (net, "linear_image") in pairs and (net, "linear_image_pca") in pairs
        assert ("efficientnet_lite0", "efficientnet_lite0_random") in pairs
        assert (setting == "within") == (("googlenet", "glm") in pairs)
    pred = report["predictions"]
    cols = {k: np.asarray(v) for k, v in pred.items()}
    t = next(t for t in tests if t["setting"] == "within" and t["animal"] == "M1" and t["b"] == "linear_image_pca")

    def right(model):
        rows = (cols["model"] == model) & (cols["animal"] == "M1") & (cols["setting"] == "within")
        order = np.argsort(cols["trial"][rows])
        return ((cols["p_natural"][rows] >= 0.5) == cols["label"][rows].astype(bool))[order]

    a, b = right(t["a"]), right(t["b"])
    assert t["a_only_correct"] == int((a & ~b).sum()) and t["b_only_correct"] == int((~a & b).sum())


def test_mcnemar_and_permutation_p_values():
    from rtdecode.offline.statistics import mcnemar_exact, permutation_p_value

    a = np.array([True] * 10 + [False] * 2 + [True] * 50)
    b = np.array([False] * 10 + [True] * 2 + [True] * 50)
    res = mcnemar_exact(a, b)
    assert (res["a_only_correct"], res["b_only_correct"]) == (10, 2)
    assert res["p_value"] == pytest.approx(0.03857, abs=1e-4)  # 2 * P(X <= 2), X ~ Bin(12, 1/2)
    assert mcnemar_exact(a, a)["p_value"] == 1.0
    assert permutation_p_value(0.9, np.full(199, 0.5)) == pytest.approx(1 / 200)
    assert permutation_p_value(0.5, np.full(199, 0.5)) == 1.0


def test_the_permutation_test_separates_signal_from_none(report):
    """At least 200 permutations; the within-animal linear read-out is far above its null; a null built
    the same way on labels that carry nothing does not reach significance."""
    from rtdecode.offline.evaluate import EvaluationConfig, _permutation_null
    from rtdecode.offline.statistics import permutation_p_value

    within = [p for p in report["permutation_test"] if p["setting"] == "within"]
    assert len(within) == 3 and all(p["permutations"] >= 200 for p in within)
    assert all(p["p_value"] < 0.01 and p["observed_accuracy"] > p["null_95th_percentile"] for p in within)
    rng = np.random.default_rng(3)
    z = rng.normal(size=(120, 5))
    y = rng.integers(0, 2, 120)
    folds = [((z[:60], z[60:]), np.arange(60), np.arange(60, 120))]
    null = _permutation_null(folds, y, None, EvaluationConfig(permutations=200))
    from sklearn.linear_model import LogisticRegression

    observed = (LogisticRegression().fit(z[:60], y[:60]).predict(z[60:]) == y[60:]).mean()
    assert permutation_p_value(observed, null) > 0.05


def test_temperature_scaling_recovers_an_overconfident_models_temperature():
    from rtdecode.offline.statistics import apply_temperature, brier, fit_temperature, reliability

    rng = np.random.default_rng(0)
    d = rng.normal(0, 2, 4000)
    y = (rng.uniform(size=4000) < 1 / (1 + np.exp(-d))).astype(int)
    logits = np.stack([np.zeros_like(d), 5 * d], axis=1)  # five times too confident
    t = fit_temperature(logits, y)
    assert 4.5 < t < 5.5
    raw, fixed = apply_temperature(logits, 1.0), apply_temperature(logits, t)
    assert brier(fixed, y) < brier(raw, y)
    assert reliability(fixed, y)["expected_calibration_error"] < reliability(raw, y)["expected_calibration_error"]


def test_splits_by_image_and_by_block(realism_animal, three_animals):
    from rtdecode.offline.splits import SplitError, calibration_split, folds, stimulus_blocks

    ds = load_animal(realism_animal, image_size=32)  # 3 repeats: 2 blocks of each family
    for tr, te in folds(ds, 3, "image", seed=0):
        assert not set(ds.condition[tr]) & set(ds.condition[te])  # no image in both
    blocks = stimulus_blocks(ds)
    assert len(np.unique(blocks)) == 4
    block_folds = folds(ds, 5, "block", seed=0)
    assert len(block_folds) == 2
    for tr, te in block_folds:
        assert not set(blocks[tr]) & set(blocks[te])  # whole blocks
        assert set(ds.labels[te]) == {0, 1}  # one block of each family
    cal, test = calibration_split(ds, 0.5, 0, "block")
    assert (
        ds.trials.start_time.to_numpy()[cal][ds.labels[cal] == 1].max()
        < ds.trials.start_time.to_numpy()[test][ds.labels[test] == 1].min()
    )  # the first natural block calibrates, the later one is scored
    one = load_animal(three_animals[0], image_size=32)  # 1 repeat: one block per family
    with pytest.raises(SplitError, match="1 natural-scene and 1 grating block"):
        folds(one, 2, "block")


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


def test_linear_read_outs_of_the_neural_image_sit_beside_every_network(report, report_dir):
    lin = report["linear_on_image"]
    assert [e["animal"] for e in lin["within_animal"]] == ["M0", "M1", "M2"]
    assert set(lin["networks"]) == NETWORKS
    for e, w in zip(lin["within_animal"], report["within_animal"], strict=True):
        for m in (*NETWORKS, "linear_image", "linear_image_pca", "glm"):
            assert e[m]["accuracy"] == w["scores"][m]["accuracy"]
        best = max(e["linear_image"]["accuracy"], e["linear_image_pca"]["accuracy"])
        for net in NETWORKS:
            assert e["margin_over_best_linear"][net] == pytest.approx(e[net]["accuracy"] - best)
    within_linear = [e["linear_image_pca"] for e in report["within_animal"] for e in [e["scores"]]]
    assert all(s["p_vs_majority"] < 1e-4 for s in within_linear), [s["accuracy"] for s in within_linear]
    md = (report_dir / "report.md").read_text()
    assert "linear on image PCs" in md


def test_paper_protocol_images_carry_each_trials_own_stimulus(three_animals):
    """The leaky images are what the paper did: one PS and one baseline fit on every trial, each
    trial's image made with it (the leakage-free images never let a scored trial fit them)."""
    ds = load_animal(three_animals[0], image_size=32)
    imgs = paper_protocol_images(ds)
    assert imgs.images.shape == (ds.n_trials, 32 * 32)
    assert np.array_equal(imgs.ps_fit[0], np.arange(ds.n_trials))
    assert np.array_equal(imgs.baseline_fit, np.arange(ds.n_trials))


def test_the_learning_curve_by_random_subsets_and_by_the_first_minutes_in_recording_order(report, report_dir):
    """Rows of calibration-trial count, minutes and accuracy, within each animal and across for each
    target; the first-minutes rows are prefixes in recording order, and a prefix that has seen only one
    class is not scored and says why."""
    rows = report["learning_curve"]
    for a in ("M0", "M1", "M2"):
        rand = [r for r in rows if r["setting"] == "within" and r["animal"] == a and r["subset"] == "random"]
        n = [r["calibration_trials"] for r in rand]
        assert n == sorted(n) and len(n) >= 3 and n[0] >= 16, (a, n)
        assert len({r["n_test"] for r in rand}) == 1
        first = [r for r in rows if r["setting"] == "within" and r["animal"] == a and r["subset"] == "first_minutes"]
        minutes = [r["calibration_minutes"] for r in first]
        assert minutes == sorted(minutes) and len(first) == 4
        # one repeat: the natural block comes first, so the earliest prefixes hold no gratings
        early = first[0]
        assert early["calibration_natural"] == early["calibration_trials"] and early["accuracy"] is None
        assert "0 artificial" in early["not_scored"]
        assert first[-1]["accuracy"] is not None
    assert sorted({r["target"] for r in rows if r["setting"] == "across"}) == ["M0", "M1", "M2"]
    assert (report_dir / "learning_curve.png").stat().st_size > 5000
    md = (report_dir / "report.md").read_text()
    assert "## How long to calibrate" in md and "not scored" in md
