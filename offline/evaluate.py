"""The paper's experiments, leakage-free: within-animal k-fold and across-animal transfer.

Models scored on the same trials:

- ``googlenet``: GoogLeNet (head or fine-tune) on neural images;
- ``linear_image`` / ``linear_image_pca``: logistic regression on the same network inputs (the
  pixels, or their first ``IMAGE_PCS`` principal components): what a linear read-out of the neural
  image gets, within and across animals;
- ``glm``: logistic regression on ``R`` (within-animal only: units differ across animals);
- ``temporal``: the paper's temporal spike image (units x time bins) through the same GoogLeNet
  (within-animal only, same reason);
- ``shuffled_labels``: the GoogLeNet pipeline trained and scored on one permutation of the labels
  (a permutation-test control, ~chance);
- ``stimulus_only``: neural images formed with shuffled ``R`` (control: what the stimuli in
  ``PS`` alone give, ~chance when there is no leakage).

Across animals, a target's baseline and ``PS`` are fit on a calibration split of its own trials
(stratified, ``calibration_fraction``) and it is scored on the disjoint rest; training animals'
images are cross-fitted over all their trials.

Beside them, with ``paper_protocol`` (the default), the same GoogLeNet experiments on the same
folds and test trials under the seed paper's protocol: baseline and ``PS`` fit on every trial of an
animal, test trials included (``experiments.paper_protocol_images``). The report's
``paper_protocol`` section gives both accuracies and the inflation in percentage points.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
from dataclasses import asdict, dataclass, field

import numpy as np
from rtdecode.offline.classifiers import IMAGE_PCS, GoogLeNetClassifier, glm_fit_predict, linear_image_fit_predict
from rtdecode.offline.dataset import AnimalDataset
from rtdecode.offline.experiments import (
    Score,
    SplitImages,
    crossfitted_images,
    paper_protocol_images,
    split_images,
    temporal_images,
)
from rtdecode.offline.learning_curve import across_curve, within_curve
from sklearn.model_selection import StratifiedKFold, train_test_split

from rtdecode.core.model_input import ImageNormalisation

MODELS_WITHIN = ("googlenet", "linear_image", "linear_image_pca", "glm", "temporal", "shuffled_labels", "stimulus_only")
MODELS_ACROSS = ("googlenet", "linear_image", "linear_image_pca", "shuffled_labels", "stimulus_only")
#: What the report's ``linear_on_image`` section sets side by side.
LINEAR_COMPARED = ("googlenet", "linear_image", "linear_image_pca")

#: The seed paper's numbers on real Allen data (DESIGN section 2), to set beside ours.
PAPER = {
    "within_animal_mean": 0.96,
    "within_animal_range": [0.89, 1.00],
    "across_best": {"train": ["M0", "M1"], "target": "M3", "accuracy": 0.912},
    "across_worst": {"train": ["M2"], "target": "M3", "accuracy": 0.82},
    "glm_baseline": 0.83,
    "temporal_image_best": 0.72,
}


@dataclass
class EvaluationConfig:
    folds: int = 5
    image_size: int = 224
    mode: str = "head"
    head_epochs: int = 300
    finetune_epochs: int = 10
    seed: int = 0
    calibration_fraction: float = 0.5
    combinations: list[tuple[tuple[str, ...], str]] | None = None  # None = defaults
    weights: str | None = None
    paper_protocol: bool = True  # also run the paper's leaky protocol, for the report's comparison
    learning_curve: bool = True  # accuracy against the number of the target's calibration trials

    def validate(self, n_animals: int) -> None:
        if self.folds < 2:
            raise ValueError(f"folds = {self.folds}: expected at least 2")
        if not 0.1 <= self.calibration_fraction <= 0.9:
            raise ValueError(f"calibration_fraction = {self.calibration_fraction}: expected 0.1 to 0.9")
        if self.image_size < 32:
            raise ValueError(f"image_size = {self.image_size}: GoogLeNet needs at least 32 pixels")


def default_combinations(names: list[str]) -> list[tuple[tuple[str, ...], str]]:
    """Every leave-one-out (all others -> one) and every single pair (one -> another)."""
    if len(names) < 2:
        return []
    combos = [(tuple(n for n in names if n != t), t) for t in names]
    combos += [((a,), t) for t in names for a in names if a != t]
    seen, out = set(), []
    for c in combos:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def parse_combination(text: str) -> tuple[tuple[str, ...], str]:
    """``"M0,M1:M2"`` -> ((M0, M1), M2)."""
    if text.count(":") != 1:
        raise ValueError(f"combination {text!r}: expected TRAIN[,TRAIN...]:TARGET, e.g. M0,M1:M2")
    train, target = text.split(":")
    names = tuple(n.strip() for n in train.split(",") if n.strip())
    if not names or not target.strip() or target.strip() in names:
        raise ValueError(f"combination {text!r}: needs training animals and a different target")
    return names, target.strip()


def _inputs(split: SplitImages) -> tuple[np.ndarray, np.ndarray]:
    n = split.normalisation
    return n.to_model_input(split.train.images), n.to_model_input(split.test.images)


@dataclass
class WithinResult:
    animal: str
    scores: dict[str, Score]
    folds: list[dict] = field(default_factory=list)  # provenance per fold
    curves: list[dict] = field(default_factory=list)
    paper: Score | None = None  # GoogLeNet under the paper's leaky protocol, same folds
    example_split: SplitImages | None = None
    example_test_labels: np.ndarray | None = None


def within_animal(
    ds: AnimalDataset, ds_ref, cfg: EvaluationConfig, clf: GoogLeNetClassifier, executor, advance=None
) -> WithinResult:
    """k-fold within one animal; baseline and PS fit on the training folds only."""
    skf = StratifiedKFold(cfg.folds, shuffle=True, random_state=cfg.seed)
    folds = list(skf.split(np.zeros(ds.n_trials), ds.labels))
    futures = [
        (
            executor.submit(split_images, ds_ref, tr, te, cfg.seed + k),
            executor.submit(split_images, ds_ref, tr, te, cfg.seed + k, True),
        )
        for k, (tr, te) in enumerate(folds)
    ]
    res = WithinResult(ds.name, {m: Score(m) for m in MODELS_WITHIN})
    leaky = executor.submit(paper_protocol_images, ds_ref) if cfg.paper_protocol else None
    if leaky is not None:
        res.paper = Score("googlenet_paper_protocol")
    # Shuffled-label control as a permutation test: one permutation of the animal's labels, trained on
    # and scored against, so it measures what a classifier finds when labels carry no information.
    y_perm = np.random.default_rng(cfg.seed).permutation(ds.labels)
    for k, ((tr, te), (f_real, f_shuf)) in enumerate(zip(folds, futures, strict=True)):
        split: SplitImages = f_real.result()
        y_tr, y_te = ds.labels[tr], ds.labels[te]
        x_tr, x_te = _inputs(split)
        real, shuffled = clf.fit_predict_many(x_tr, [y_tr, y_perm[tr]], x_te)
        res.scores["googlenet"].add(te, y_te, real.p_natural)
        res.scores["shuffled_labels"].add(te, y_perm[te], shuffled.p_natural)
        res.curves.append({"fold": k, **real.curve})
        _linear_scores(res.scores, te, y_te, x_tr, y_tr, x_te, cfg.seed)
        if leaky is not None:
            imgs = leaky.result().images
            norm = ImageNormalisation.fit(imgs[tr], cfg.image_size)
            p_leaky = clf.fit_predict(norm.to_model_input(imgs[tr]), y_tr, norm.to_model_input(imgs[te])).p_natural
            res.paper.add(te, y_te, p_leaky)
        R, _ = ds.responses(tr)
        res.scores["glm"].add(te, y_te, glm_fit_predict(R[tr], y_tr, R[te], cfg.seed).p_natural)
        T = temporal_images(ds, tr, cfg.image_size)
        tnorm = ImageNormalisation.fit(T[tr], cfg.image_size)
        res.scores["temporal"].add(
            te,
            y_te,
            clf.fit_predict(tnorm.to_model_input(T[tr]), y_tr, tnorm.to_model_input(T[te])).p_natural,
        )
        s_split: SplitImages = f_shuf.result()
        sx_tr, sx_te = _inputs(s_split)
        res.scores["stimulus_only"].add(te, y_te, clf.fit_predict(sx_tr, y_tr, sx_te).p_natural)
        res.folds.append(
            {
                "fold": k,
                "test_trials": te.tolist(),
                "train_images": split.train.provenance(),
                "test_images": split.test.provenance(),
            }
        )
        if k == 0:
            res.example_split, res.example_test_labels = split, y_te
        if advance:
            advance()
    return res


def _linear_scores(scores: dict, trials, y_te, x_tr, y_tr, x_te, seed: int) -> None:
    scores["linear_image"].add(trials, y_te, linear_image_fit_predict(x_tr, y_tr, x_te, None, seed).p_natural)
    pca = linear_image_fit_predict(x_tr, y_tr, x_te, IMAGE_PCS, seed)
    scores["linear_image_pca"].add(trials, y_te, pca.p_natural)


def paper_protocol_section(within: list[WithinResult], across: list[AcrossResult]) -> dict | None:
    """GoogLeNet leakage-free beside GoogLeNet under the paper's protocol, per animal and combination,
    and the inflation in percentage points (None when the paper's protocol was not run)."""
    if not within or within[0].paper is None:
        return None

    def row(ours: Score, leaky: Score) -> dict:
        a, b = ours.as_dict(), leaky.as_dict()
        return {
            "leakage_free": {k: a[k] for k in ("accuracy", "ci95", "n_trials")},
            "paper_protocol": {k: b[k] for k in ("accuracy", "ci95", "n_trials")},
            "inflation_pp": 100 * (b["accuracy"] - a["accuracy"]),
        }

    return {
        "protocol": "baseline and preferred stimuli fit on every trial of an animal, test trials included",
        "within_animal": [{"animal": w.animal, **row(w.scores["googlenet"], w.paper)} for w in within],
        "across_animal": [
            {"train": list(a.train), "target": a.target, **row(a.scores["googlenet"], a.paper)} for a in across
        ],
    }


def linear_on_image(within: list[dict], across: list[dict]) -> dict:
    """GoogLeNet beside the linear read-outs of the same neural images (and the GLM on ``R`` within
    animals), per animal and per combination: accuracy, 95 % interval, and GoogLeNet's margin."""

    def row(scores: dict, extra: tuple[str, ...]) -> dict:
        out = {m: {k: scores[m][k] for k in ("accuracy", "ci95", "n_trials")} for m in LINEAR_COMPARED + extra}
        best = max(scores["linear_image"]["accuracy"], scores["linear_image_pca"]["accuracy"])
        out["googlenet_minus_best_linear"] = scores["googlenet"]["accuracy"] - best
        return out

    return {
        "pcs": IMAGE_PCS,
        "within_animal": [{"animal": w["animal"], **row(w["scores"], ("glm",))} for w in within],
        "across_animal": [{"train": a["train"], "target": a["target"], **row(a["scores"], ())} for a in across],
    }


@dataclass
class AcrossResult:
    train: tuple[str, ...]
    target: str
    scores: dict[str, Score]
    calibration_trials: list[int]
    test_trials: list[int]
    paper: Score | None = None  # GoogLeNet under the paper's leaky protocol, same test trials


def _full_leaky(ds: AnimalDataset):
    """The paper's images of every trial of an animal (PS and baseline fit on all), normalised per animal."""
    imgs = paper_protocol_images(ds)
    norm = ImageNormalisation.fit(imgs.images, ds.stack.shape[-1])
    return norm.to_model_input(imgs.images), ds.labels.copy()


def _full_crossfit(ds: AnimalDataset, seed: int, shuffle_responses: bool = False):
    """Cross-fitted images of every trial of a training animal, normalised per animal."""
    idx = np.arange(ds.n_trials)
    R, _ = ds.responses(idx)
    if shuffle_responses:
        R = R[np.random.default_rng(seed + 7919).permutation(idx)]
    imgs = crossfitted_images(R, ds, idx, idx, seed)
    norm = ImageNormalisation.fit(imgs.images, ds.stack.shape[-1])
    return norm.to_model_input(imgs.images), ds.labels.copy()


def calibration_split(ds: AnimalDataset, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (calibration, test) split of a target animal's trials; sorted, disjoint."""
    cal, test = train_test_split(np.arange(ds.n_trials), train_size=fraction, stratify=ds.labels, random_state=seed)
    return np.sort(cal), np.sort(test)


def across_animals(
    datasets: dict[str, AnimalDataset],
    refs: dict,
    cfg: EvaluationConfig,
    clf: GoogLeNetClassifier,
    executor,
    advance=None,
) -> list[AcrossResult]:
    combos = cfg.combinations if cfg.combinations is not None else default_combinations(list(datasets))
    for train, target in combos:
        unknown = [n for n in (*train, target) if n not in datasets]
        if unknown:
            raise ValueError(f"combination {train}->{target}: unknown animal(s) {unknown}; have {list(datasets)}")
    train_names = sorted({n for c in combos for n in c[0]})
    train_f = {
        (n, s): executor.submit(_full_crossfit, refs[n], cfg.seed, s) for n in train_names for s in (False, True)
    }
    targets = sorted({c[1] for c in combos})
    cal = {t: calibration_split(datasets[t], cfg.calibration_fraction, cfg.seed) for t in targets}
    target_f = {
        (t, s): executor.submit(split_images, refs[t], *cal[t], cfg.seed, s) for t in targets for s in (False, True)
    }
    names = sorted(set(train_names) | set(targets))
    leaky_f = {n: executor.submit(_full_leaky, refs[n]) for n in names} if cfg.paper_protocol else {}
    rng = np.random.default_rng(cfg.seed + 1)
    perm_target = {t: rng.permutation(datasets[t].labels) for t in targets}
    out = []
    for train, target in combos:
        ds_t = datasets[target]
        scores = {m: Score(m) for m in MODELS_ACROSS}
        cal_idx, test_idx = cal[target]
        y_te = ds_t.labels[test_idx]
        for shuffled_r in (False, True):
            parts = [train_f[(n, shuffled_r)].result() for n in train]
            x_tr = np.concatenate([p[0] for p in parts])
            y_tr = np.concatenate([p[1] for p in parts])
            _, x_te = _inputs(target_f[(target, shuffled_r)].result())
            if shuffled_r:
                scores["stimulus_only"].add(test_idx, y_te, clf.fit_predict(x_tr, y_tr, x_te).p_natural)
            else:
                real, shuf = clf.fit_predict_many(x_tr, [y_tr, rng.permutation(y_tr)], x_te)
                scores["googlenet"].add(test_idx, y_te, real.p_natural)
                _linear_scores(scores, test_idx, y_te, x_tr, y_tr, x_te, cfg.seed)
                scores["shuffled_labels"].add(test_idx, perm_target[target][test_idx], shuf.p_natural)
        paper = None
        if leaky_f:
            parts = [leaky_f[n].result() for n in train]
            x_all, _ = leaky_f[target].result()
            paper = Score("googlenet_paper_protocol")
            leaky_tr = np.concatenate([p[0] for p in parts])
            y_leaky = np.concatenate([p[1] for p in parts])
            paper.add(test_idx, y_te, clf.fit_predict(leaky_tr, y_leaky, x_all[test_idx]).p_natural)
        out.append(AcrossResult(tuple(train), target, scores, cal_idx.tolist(), test_idx.tolist(), paper))
        if advance:
            advance()
    return out


def learning_curves(datasets: dict, refs: dict, cfg: EvaluationConfig, clf, executor, combos) -> list[dict]:
    """Rows of (setting, animal or combination, calibration trials, minutes, accuracy, interval):
    within each animal on its first fold; across, for each target, from its combination with the
    most training animals."""
    rows = []
    for name, ds in datasets.items():
        skf = StratifiedKFold(cfg.folds, shuffle=True, random_state=cfg.seed)
        tr, te = next(iter(skf.split(np.zeros(ds.n_trials), ds.labels)))
        rows += within_curve(ds, refs[name], tr, te, cfg, clf, executor)
    best: dict[str, tuple[str, ...]] = {}
    for train, target in combos:
        if len(train) > len(best.get(target, ())):
            best[target] = tuple(train)
    for target, train in sorted(best.items()):
        parts = [executor.submit(_full_crossfit, refs[n], cfg.seed).result() for n in train]
        cal_idx, test_idx = calibration_split(datasets[target], cfg.calibration_fraction, cfg.seed)
        x_tr = np.concatenate([p[0] for p in parts])
        y_tr = np.concatenate([p[1] for p in parts])
        rows += across_curve(train, datasets[target], refs[target], cal_idx, test_idx, x_tr, y_tr, cfg, clf, executor)
    return rows


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in (
        "rtdecode",
        "numpy",
        "torch",
        "torchvision",
        "scikit-learn",
        "spikeinterface",
        "pynwb",
        "dask",
    ):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def run_evaluation(
    datasets: list[AnimalDataset], cfg: EvaluationConfig, executor, progress=None, refs: dict | None = None
) -> dict:
    """Run every experiment; returns the report dict (figures are made by ``offline.report``)."""
    cfg.validate(len(datasets))
    by_name = {d.name: d for d in datasets}
    if len(by_name) != len(datasets):
        raise ValueError(f"animal names must be unique, got {[d.name for d in datasets]}")
    refs = refs or {d.name: executor.scatter(d) for d in datasets}
    clf = GoogLeNetClassifier(
        cfg.weights, cfg.mode, cfg.head_epochs, cfg.finetune_epochs, cfg.seed, image_size=cfg.image_size
    )
    combos = cfg.combinations if cfg.combinations is not None else default_combinations(list(by_name))
    task = progress.add_task("experiments", total=len(datasets) * cfg.folds + len(combos)) if progress else None

    def advance():
        if progress:
            progress.update(task, advance=1)

    within = [within_animal(d, refs[d.name], cfg, clf, executor, advance) for d in datasets]
    across = across_animals(by_name, refs, cfg, clf, executor, advance) if len(datasets) > 1 else []
    report = {
        "config": {**asdict(cfg), "combinations": [[list(t), g] for t, g in combos]},
        "classifier": clf.description,
        "pretrained_weights": clf.pretrained,
        "executor": executor.description,
        "versions": versions(),
        "paper": PAPER,
        "animals": [
            {
                "name": d.name,
                "n_trials": d.n_trials,
                "n_units": d.n_units,
                "n_natural": int(d.labels.sum()),
                "source": d.source,
            }
            for d in datasets
        ],
        "within_animal": [
            {
                "animal": w.animal,
                "scores": {m: s.as_dict() for m, s in w.scores.items()},
                "folds": w.folds,
                "training_curves": w.curves,
            }
            for w in within
        ],
        "across_animal": [
            {
                "train": list(a.train),
                "target": a.target,
                "scores": {m: s.as_dict() for m, s in a.scores.items()},
                "calibration_trials": a.calibration_trials,
                "test_trials": a.test_trials,
            }
            for a in across
        ],
    }
    report["linear_on_image"] = linear_on_image(report["within_animal"], report["across_animal"])
    paper = paper_protocol_section(within, across)
    if paper is not None:
        report["paper_protocol"] = paper
    if cfg.learning_curve:
        report["learning_curve"] = learning_curves(
            by_name, refs, cfg, clf, executor, combos if len(datasets) > 1 else []
        )
    report["_within_objects"] = within  # for figures; dropped before writing JSON
    return report
