"""The paper's experiments, leakage-free: within-animal k-fold and across-animal transfer.

Models scored on the same trials:

- one per network (``rtdecode.offline.backbones``: ``googlenet``, ``efficientnet_lite0``; pretrained
  when ImageNet weights are there) on neural images, and ``<network>_random``, the same network from
  random initialisation, beside each pretrained one (``random_init_control``);
- ``linear_image`` / ``linear_image_pca``: logistic regression on the same network inputs (the
  pixels, or their first ``IMAGE_PCS`` principal components);
- ``glm``: logistic regression on ``R`` (within-animal only: units differ across animals);
- ``temporal``: the paper's temporal spike image (units x time bins) through the primary network
  (the first of ``backbones``; within-animal only, same reason);
- ``shuffled_labels``: the primary network trained and scored on one permutation of the labels;
- ``stimulus_only``: neural images formed with shuffled ``R`` (what the stimuli in ``PS`` alone give;
  at chance by construction when nothing leaks, so it is also run under the paper's protocol,
  where it *can* detect the leak).

Folds come from ``rtdecode.offline.splits`` (``trial``, ``image`` or ``block``). Across animals, a
target's baseline and ``PS`` are fit on a calibration split of its own trials and it is scored on the
disjoint rest; training animals' images are cross-fitted (leave one out) over all their trials.

Beside them, with ``paper_protocol`` (the default), the primary network on the same folds and test
trials under the seed paper's protocol (baseline and ``PS`` fit on every trial of an animal), and
``self_term_only``: our own trained classifier scoring images that differ from ours only by letting
each scored trial into its own ``PS`` and baseline -- so the inflation splits into the leak itself and
the rest of the paper's protocol (more fit trials, training images that are not cross-fitted).

Statistics (``rtdecode.offline.statistics``): every scored trial's prediction, balanced and per-class
accuracy, confusion matrices, Brier scores and reliability, exact McNemar tests for every comparison
the reading states, a permutation test of the linear read-out, the images' scale (training against
scored std) per split.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
from dataclasses import asdict, dataclass, field

import numpy as np
from rtdecode.offline import splits
from rtdecode.offline.classifiers import (
    IMAGE_PCS,
    NetworkClassifier,
    glm_fit_predict,
    linear_image_fit_predict,
    logistic_regression_many,
    pca_features,
)
from rtdecode.offline.dataset import AnimalDataset
from rtdecode.offline.experiments import (
    SplitImages,
    crossfitted_images,
    image_scale,
    paper_protocol_images,
    self_term_images,
    split_images,
    temporal_images,
)
from rtdecode.offline.learning_curve import across_curve, within_curve
from rtdecode.offline.statistics import Score, paired, permutation_p_value, reliability

from rtdecode.core.model_input import ImageNormalisation

LINEAR_MODELS = ("linear_image", "linear_image_pca")
CONTROLS = ("shuffled_labels", "stimulus_only")

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
    weights: str | None = None  # GoogLeNet's ImageNet checkpoint
    backbones: tuple[str, ...] = ("googlenet", "efficientnet-lite0")  # the first is the primary network
    random_init_control: bool = True  # a random-init copy beside every pretrained network
    split: str = "trial"  # trial, image or block (rtdecode.offline.splits)
    permutations: int = 200  # label permutations of the linear read-out's permutation test
    paper_protocol: bool = True  # also run the paper's leaky protocol, for the report's comparison
    learning_curve: bool = True  # accuracy against the number of the target's calibration trials

    def validate(self, n_animals: int) -> None:
        from rtdecode.offline.backbones import BACKBONES

        if self.folds < 2:
            raise ValueError(f"folds = {self.folds}: expected at least 2")
        if not 0.1 <= self.calibration_fraction <= 0.9:
            raise ValueError(f"calibration_fraction = {self.calibration_fraction}: expected 0.1 to 0.9")
        if self.image_size < 32:
            raise ValueError(f"image_size = {self.image_size}: the networks need at least 32 pixels")
        if self.split not in splits.SPLITS:
            raise ValueError(f"split = {self.split!r}: expected one of {', '.join(splits.SPLITS)}")
        unknown = [b for b in self.backbones if b not in BACKBONES]
        if unknown or not self.backbones:
            raise ValueError(f"backbones = {list(self.backbones)}: expected one or more of {', '.join(BACKBONES)}")
        if self.permutations < 0:
            raise ValueError(f"permutations = {self.permutations}: expected 0 or more")


def make_networks(cfg: EvaluationConfig) -> list[NetworkClassifier]:
    """The networks of a report: each backbone (pretrained where it can be), and beside each pretrained
    one its random-init control. The first is the primary network (controls, paper protocol, curves)."""
    nets = []
    for name in cfg.backbones:
        kw = dict(mode=cfg.mode, head_epochs=cfg.head_epochs, finetune_epochs=cfg.finetune_epochs, seed=cfg.seed)
        weights = cfg.weights if name == "googlenet" else None
        net = NetworkClassifier(weights, image_size=cfg.image_size, backbone=name, **kw)
        nets.append(net)
        if net.pretrained and cfg.random_init_control:
            nets.append(
                NetworkClassifier(
                    None, image_size=cfg.image_size, backbone=name, pretrained=False, key=f"{net.key}_random", **kw
                )
            )
    return nets


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
class Experiment:
    """The scores of one animal (within) or one combination (across), and what else was measured."""

    setting: str  # "within" or "across"
    animal: str  # the animal, or the target
    train: tuple[str, ...] = ()
    scores: dict[str, Score] = field(default_factory=dict)
    paper: dict[str, Score] = field(default_factory=dict)  # primary under the paper's protocol, its controls
    permutation_null: list[float] = field(default_factory=list)
    scale: list[dict] = field(default_factory=list)
    folds: list[dict] = field(default_factory=list)  # provenance per fold
    curves: list[dict] = field(default_factory=list)
    calibration_trials: list[int] = field(default_factory=list)
    test_trials: list[int] = field(default_factory=list)
    example_split: SplitImages | None = None
    example_test_labels: np.ndarray | None = None

    def score(self, model: str) -> Score:
        return self.scores.setdefault(model, Score(model))

    @property
    def where(self) -> dict:
        if self.setting == "within":
            return {"setting": "within", "animal": self.animal}
        return {"setting": "across", "train": list(self.train), "target": self.animal}


def _networks_on(exp: Experiment, nets, x_tr, y_tr, x_te, trials, y_te, fold, y_perm=None, extra=()) -> list:
    """Every network trained on (x_tr, y_tr) and scored on x_te; the primary also on shuffled labels
    (``y_perm``: (train labels, test labels)) and on ``extra`` input sets. Returns the primary's extras."""
    primary_extra = []
    for k, net in enumerate(nets):
        label_sets = [y_tr] + ([y_perm[0]] if (k == 0 and y_perm is not None) else [])
        res = net.fit_predict_many(x_tr, label_sets, x_te, extra_tests=extra if k == 0 else ())
        exp.score(net.key).add(trials, y_te, res[0].p_natural, fold)
        if k == 0:
            if y_perm is not None:
                exp.score("shuffled_labels").add(trials, y_perm[1], res[1].p_natural, fold)
            primary_extra = res[0].extra
            exp.curves.append({"fold": fold, **res[0].curve})
    return primary_extra


def _linear_scores(exp: Experiment, trials, y_te, x_tr, y_tr, x_te, seed: int, fold: int) -> None:
    exp.score("linear_image").add(trials, y_te, linear_image_fit_predict(x_tr, y_tr, x_te, None, seed).p_natural, fold)
    pca = linear_image_fit_predict(x_tr, y_tr, x_te, IMAGE_PCS, seed)
    exp.score("linear_image_pca").add(trials, y_te, pca.p_natural, fold)


def within_animal(ds: AnimalDataset, ds_ref, cfg: EvaluationConfig, nets, executor, advance=None) -> Experiment:
    """k-fold within one animal; baseline and PS fit on the training folds only."""
    folds = splits.folds(ds, cfg.folds, cfg.split, cfg.seed)
    futures = [
        (
            executor.submit(split_images, ds_ref, tr, te, cfg.seed + k),
            executor.submit(split_images, ds_ref, tr, te, cfg.seed + k, True),
        )
        for k, (tr, te) in enumerate(folds)
    ]
    exp = Experiment("within", ds.name)
    primary = nets[0]
    leaky = executor.submit(paper_protocol_images, ds_ref) if cfg.paper_protocol else None
    leaky_shuffled = executor.submit(paper_protocol_images, ds_ref, True, cfg.seed) if cfg.paper_protocol else None
    # Shuffled-label control: one permutation of the animal's labels, trained on and scored against.
    y_perm = np.random.default_rng(cfg.seed).permutation(ds.labels)
    pca_folds = []
    for k, ((tr, te), (f_real, f_shuf)) in enumerate(zip(folds, futures, strict=True)):
        split: SplitImages = f_real.result()
        y_tr, y_te = ds.labels[tr], ds.labels[te]
        x_tr, x_te = _inputs(split)
        extra = []
        if cfg.paper_protocol:
            extra = [split.normalisation.to_model_input(self_term_images(ds, tr, te))]
        primary_extra = _networks_on(exp, nets, x_tr, y_tr, x_te, te, y_te, k, (y_perm[tr], y_perm[te]), extra)
        _linear_scores(exp, te, y_te, x_tr, y_tr, x_te, cfg.seed, k)
        pca_folds.append((pca_features(x_tr, x_te, IMAGE_PCS, cfg.seed), tr, te))
        R, _ = ds.responses(tr)
        exp.score("glm").add(te, y_te, glm_fit_predict(R[tr], y_tr, R[te], cfg.seed).p_natural, k)
        T = temporal_images(ds, tr, cfg.image_size)
        tnorm = ImageNormalisation.fit(T[tr], cfg.image_size)
        p_t = primary.fit_predict(tnorm.to_model_input(T[tr]), y_tr, tnorm.to_model_input(T[te])).p_natural
        exp.score("temporal").add(te, y_te, p_t, k)
        sx_tr, sx_te = _inputs(f_shuf.result())
        exp.score("stimulus_only").add(te, y_te, primary.fit_predict(sx_tr, y_tr, sx_te).p_natural, k)
        if cfg.paper_protocol:
            exp.paper.setdefault("self_term_only", Score(f"{primary.key}_self_term_only")).add(
                te, y_te, primary_extra[0], k
            )
            for key, fut in (("paper_protocol", leaky), ("stimulus_only", leaky_shuffled)):
                imgs = fut.result().images
                norm = ImageNormalisation.fit(imgs[tr], cfg.image_size)
                p = primary.fit_predict(norm.to_model_input(imgs[tr]), y_tr, norm.to_model_input(imgs[te])).p_natural
                exp.paper.setdefault(key, Score(f"{primary.key}_{key}")).add(te, y_te, p, k)
        exp.scale.append({**exp.where, "split": f"fold {k}", **split.scale})
        exp.folds.append(
            {
                "fold": k,
                "test_trials": te.tolist(),
                "train_images": split.train.provenance(),
                "test_images": split.test.provenance(),
            }
        )
        if k == 0:
            exp.example_split, exp.example_test_labels = split, y_te
        if advance:
            advance()
    exp.permutation_null = _permutation_null(pca_folds, ds.labels, None, cfg)
    return exp


def _permutation_null(pca_folds, labels: np.ndarray, test_labels: np.ndarray | None, cfg) -> list[float]:
    """Accuracies of the linear read-out on principal components with the labels permuted.

    Within an animal (``test_labels`` None) the animal's labels are permuted and the whole
    cross-validation rerun; across animals the training animals' labels are permuted and the target is
    scored on its own labels. The principal components do not depend on labels, so they are fit once
    per fold; the logistic regressions of every permutation are fit together."""
    if cfg.permutations == 0:
        return []
    rng = np.random.default_rng(cfg.seed + 104729)
    perms = np.stack([rng.permutation(labels) for _ in range(cfg.permutations)])  # (k, n)
    correct = np.zeros(cfg.permutations)
    n = 0
    for (z_tr, z_te), tr, te in pca_folds:
        w = logistic_regression_many(z_tr, perms[:, tr], C=1.0)
        predicted = (w[:, :-1] @ np.asarray(z_te, np.float64).T + w[:, -1:]) > 0  # (k, len(te))
        truth = perms[:, te] if test_labels is None else np.asarray(test_labels)[None, :]
        correct += (predicted == truth.astype(bool)).sum(axis=1)
        n += len(te)
    return (correct / n).tolist()


def _full_crossfit(ds: AnimalDataset, seed: int, shuffle_responses: bool = False):
    """Cross-fitted (leave-one-out) images of every trial of a training animal, normalised per animal."""
    idx = np.arange(ds.n_trials)
    R, _ = ds.responses(idx)
    if shuffle_responses:
        R = R[np.random.default_rng(seed + 7919).permutation(idx)]
    imgs = crossfitted_images(R, ds, idx, idx)
    norm = ImageNormalisation.fit(imgs.images, ds.stack.shape[-1])
    return norm.to_model_input(imgs.images), ds.labels.copy()


def _full_leaky(ds: AnimalDataset, shuffle_responses: bool = False, seed: int = 0):
    """The paper's images of every trial of an animal (PS and baseline fit on all), normalised per animal."""
    imgs = paper_protocol_images(ds, shuffle_responses, seed)
    norm = ImageNormalisation.fit(imgs.images, ds.stack.shape[-1])
    return norm.to_model_input(imgs.images), ds.labels.copy()


def across_animals(
    datasets: dict[str, AnimalDataset], refs: dict, cfg: EvaluationConfig, nets, executor, advance=None
) -> list[Experiment]:
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
    cal = {t: splits.calibration_split(datasets[t], cfg.calibration_fraction, cfg.seed, cfg.split) for t in targets}
    target_f = {
        (t, s): executor.submit(split_images, refs[t], *cal[t], cfg.seed, s) for t in targets for s in (False, True)
    }
    names = sorted(set(train_names) | set(targets))
    leaky_f = {}
    if cfg.paper_protocol:
        leaky_f = {(n, s): executor.submit(_full_leaky, refs[n], s, cfg.seed) for n in names for s in (False, True)}
    rng = np.random.default_rng(cfg.seed + 1)
    perm_target = {t: rng.permutation(datasets[t].labels) for t in targets}
    primary = nets[0]
    out = []
    for train, target in combos:
        ds_t = datasets[target]
        exp = Experiment("across", target, tuple(train))
        cal_idx, test_idx = cal[target]
        exp.calibration_trials, exp.test_trials = cal_idx.tolist(), test_idx.tolist()
        y_te = ds_t.labels[test_idx]
        parts = [train_f[(n, False)].result() for n in train]
        x_tr = np.concatenate([p[0] for p in parts])
        y_tr = np.concatenate([p[1] for p in parts])
        split = target_f[(target, False)].result()
        _, x_te = _inputs(split)
        extra = []
        if cfg.paper_protocol:
            extra = [split.normalisation.to_model_input(self_term_images(ds_t, cal_idx, test_idx))]
        y_perm = (rng.permutation(y_tr), perm_target[target][test_idx])
        primary_extra = _networks_on(exp, nets, x_tr, y_tr, x_te, test_idx, y_te, 0, y_perm, extra)
        _linear_scores(exp, test_idx, y_te, x_tr, y_tr, x_te, cfg.seed, 0)
        exp.permutation_null = _permutation_null(
            [(pca_features(x_tr, x_te, IMAGE_PCS, cfg.seed), np.arange(len(y_tr)), np.arange(len(y_te)))],
            y_tr,
            y_te,
            cfg,
        )
        sparts = [train_f[(n, True)].result() for n in train]
        _, sx_te = _inputs(target_f[(target, True)].result())
        p_s = primary.fit_predict(np.concatenate([p[0] for p in sparts]), y_tr, sx_te).p_natural
        exp.score("stimulus_only").add(test_idx, y_te, p_s, 0)
        if cfg.paper_protocol:
            exp.paper["self_term_only"] = Score(f"{primary.key}_self_term_only")
            exp.paper["self_term_only"].add(test_idx, y_te, primary_extra[0], 0)
            for key, shuffled in (("paper_protocol", False), ("stimulus_only", True)):
                lparts = [leaky_f[(n, shuffled)].result() for n in train]
                x_all, _ = leaky_f[(target, shuffled)].result()
                lx_tr = np.concatenate([p[0] for p in lparts])
                p = primary.fit_predict(lx_tr, y_tr, x_all[test_idx]).p_natural
                exp.paper[key] = Score(f"{primary.key}_{key}")
                exp.paper[key].add(test_idx, y_te, p, 0)
        exp.scale.append({**exp.where, "split": "calibration -> test", **split.scale})
        out.append(exp)
        if advance:
            advance()
    return out


def learning_curves(datasets: dict, refs: dict, cfg: EvaluationConfig, clf, executor, combos) -> list[dict]:
    """Rows of (setting, animal or combination, subset kind, calibration trials, minutes, accuracy,
    interval): within each animal on its first fold; across, for each target, from its combination with
    the most training animals. Subsets are random (stratified) or the first N minutes in recording order."""
    rows = []
    for name, ds in datasets.items():
        tr, te = splits.folds(ds, cfg.folds, cfg.split, cfg.seed)[0]
        rows += within_curve(ds, refs[name], tr, te, cfg, clf, executor)
    best: dict[str, tuple[str, ...]] = {}
    for train, target in combos:
        if len(train) > len(best.get(target, ())):
            best[target] = tuple(train)
    for target, train in sorted(best.items()):
        parts = [executor.submit(_full_crossfit, refs[n], cfg.seed).result() for n in train]
        cal_idx, test_idx = splits.calibration_split(datasets[target], cfg.calibration_fraction, cfg.seed, cfg.split)
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
        "efficientnet-lite-pytorch",
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


def _exp_dict(e: Experiment) -> dict:
    d = {**e.where, "scores": {m: s.as_dict() for m, s in e.scores.items()}}
    if e.setting == "within":
        d["folds"] = e.folds
        d["training_curves"] = e.curves
    else:
        d["calibration_trials"] = e.calibration_trials
        d["test_trials"] = e.test_trials
    return d


def _comparisons(e: Experiment, nets) -> list[dict]:
    """The paired tests behind every comparison the reading states, for one animal or combination."""
    keys = [n.key for n in nets]
    out = []
    for k in keys:
        for lin in LINEAR_MODELS:
            out.append(paired(e.scores[k], e.scores[lin], family="network vs linear read-out", **e.where))
    for n in nets:
        if n.key.endswith("_random") and n.key[: -len("_random")] in e.scores:
            out.append(
                paired(
                    e.scores[n.key[: -len("_random")]], e.scores[n.key], family="pretrained vs random-init", **e.where
                )
            )
    if len(nets) > 1 and not nets[1].key.endswith("_random"):
        out.append(paired(e.scores[keys[0]], e.scores[keys[1]], family="network vs network", **e.where))
    if "glm" in e.scores:
        out.append(paired(e.scores[keys[0]], e.scores["glm"], family="network vs GLM", **e.where))
    if e.paper:
        out.append(paired(e.paper["paper_protocol"], e.scores[keys[0]], family="paper protocol vs ours", **e.where))
        out.append(paired(e.paper["self_term_only"], e.scores[keys[0]], family="self-term leak vs ours", **e.where))
        out.append(
            paired(
                e.paper["paper_protocol"],
                e.paper["self_term_only"],
                family="paper protocol vs self-term leak",
                **e.where,
            )
        )
    return out


def paper_protocol_section(exps: list[Experiment], primary: str) -> dict | None:
    """The primary network leakage-free beside the paper's protocol and beside ``self_term_only`` (ours
    but for the scored trial in its own fit), per animal and combination, in percentage points; and the
    stimulus-only control under the paper's protocol (None when the paper's protocol was not run)."""
    if not exps or not exps[0].paper:
        return None

    def brief(s: Score) -> dict:
        d = s.as_dict()
        return {k: d[k] for k in ("accuracy", "ci95", "n_trials", "balanced_accuracy")}

    def row(e: Experiment) -> dict:
        ours, leaky, self_term = e.scores[primary], e.paper["paper_protocol"], e.paper["self_term_only"]
        return {
            **{k: v for k, v in e.where.items() if k != "setting"},
            "leakage_free": brief(ours),
            "paper_protocol": brief(leaky),
            "self_term_only": brief(self_term),
            "stimulus_only_paper_protocol": brief(e.paper["stimulus_only"]),
            "stimulus_only_leakage_free": brief(e.scores["stimulus_only"]),
            "inflation_pp": 100 * (leaky.accuracy - ours.accuracy),
            "self_term_pp": 100 * (self_term.accuracy - ours.accuracy),
            "rest_pp": 100 * (leaky.accuracy - self_term.accuracy),
        }

    within = [row(e) for e in exps if e.setting == "within"]
    across = [row(e) for e in exps if e.setting == "across"]
    return {
        "protocol": "baseline and preferred stimuli fit on every trial of an animal, test trials included",
        "self_term_only": "ours, except that each scored trial is added to the fit set of its own baseline and PS",
        "network": primary,
        "within_animal": within,
        "across_animal": across,
    }


def linear_on_image(exps: list[Experiment], nets) -> dict:
    """Every network beside the linear read-outs of the same neural images (and the GLM on ``R``
    within animals), per animal and per combination: accuracy, 95 % interval, and each network's
    margin over the better linear read-out."""
    keys = [n.key for n in nets]

    def row(e: Experiment) -> dict:
        models = keys + list(LINEAR_MODELS) + (["glm"] if "glm" in e.scores else [])
        out = {**{k: v for k, v in e.where.items() if k != "setting"}}
        for m in models:
            d = e.scores[m].as_dict()
            out[m] = {k: d[k] for k in ("accuracy", "ci95", "n_trials", "balanced_accuracy")}
        best = max(e.scores[m].accuracy for m in LINEAR_MODELS)
        out["margin_over_best_linear"] = {k: e.scores[k].accuracy - best for k in keys}
        return out

    return {
        "pcs": IMAGE_PCS,
        "networks": keys,
        "within_animal": [row(e) for e in exps if e.setting == "within"],
        "across_animal": [row(e) for e in exps if e.setting == "across"],
    }


def predictions(exps: list[Experiment]) -> dict:
    """Every scored trial of every model, column-wise: setting, animal (the target across animals),
    train (``+``-joined training animals, empty within), fold, trial, label, model, p_natural."""
    cols = {k: [] for k in ("setting", "animal", "train", "fold", "trial", "label", "model", "p_natural")}
    for e in exps:
        for s in list(e.scores.values()) + list(e.paper.values()):
            n = s.n
            cols["setting"] += [e.setting] * n
            cols["animal"] += [e.animal] * n
            cols["train"] += ["+".join(e.train)] * n
            cols["fold"] += s.folds
            cols["trial"] += s.trials
            cols["label"] += s.labels
            cols["model"] += [s.model] * n
            cols["p_natural"] += [round(p, 6) for p in s.probabilities]
    return cols


def permutation_tests(exps: list[Experiment]) -> list[dict]:
    out = []
    for e in exps:
        if not e.permutation_null:
            continue
        observed = e.scores["linear_image_pca"].accuracy
        null = np.asarray(e.permutation_null)
        out.append(
            {
                **e.where,
                "model": "linear_image_pca",
                "observed_accuracy": observed,
                "permutations": len(null),
                "null_mean": float(null.mean()),
                "null_95th_percentile": float(np.percentile(null, 95)),
                "p_value": permutation_p_value(observed, null),
            }
        )
    return out


def reliability_section(exps: list[Experiment], models: list[str]) -> dict:
    """Reliability of p(natural) pooled over animals (within) and combinations (across), per model."""
    out = {}
    for setting in ("within", "across"):
        rows = [e for e in exps if e.setting == setting]
        if not rows:
            continue
        out[setting] = {}
        for m in models:
            p = np.concatenate([e.scores[m].probabilities for e in rows if m in e.scores])
            y = np.concatenate([e.scores[m].labels for e in rows if m in e.scores])
            out[setting][m] = reliability(p, y)
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
    nets = make_networks(cfg)
    primary = nets[0]
    combos = cfg.combinations if cfg.combinations is not None else default_combinations(list(by_name))
    if len(datasets) < 2:
        combos = []
    task = progress.add_task("experiments", total=len(datasets) * cfg.folds + len(combos)) if progress else None

    def advance():
        if progress:
            progress.update(task, advance=1)

    within = [within_animal(d, refs[d.name], cfg, nets, executor, advance) for d in datasets]
    across = across_animals(by_name, refs, cfg, nets, executor, advance) if combos else []
    exps = within + across
    report = {
        "config": {**asdict(cfg), "combinations": [[list(t), g] for t, g in combos]},
        "classifier": primary.description,
        "pretrained_weights": primary.pretrained,
        "networks": [
            {"model": n.key, "backbone": n.backbone.name, "pretrained": n.pretrained, "description": n.description}
            for n in nets
        ],
        "primary_network": primary.key,
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
        "within_animal": [_exp_dict(e) for e in within],
        "across_animal": [_exp_dict(e) for e in across],
        "image_scale": [row for e in exps for row in e.scale],
    }
    report["linear_on_image"] = linear_on_image(exps, nets)
    tests = [t for e in exps for t in _comparisons(e, nets)]
    report["paired_tests"] = tests
    report["permutation_test"] = permutation_tests(exps)
    report["reliability"] = reliability_section(exps, [n.key for n in nets] + list(LINEAR_MODELS))
    paper = paper_protocol_section(exps, primary.key)
    if paper is not None:
        report["paper_protocol"] = paper
    if cfg.learning_curve:
        report["learning_curve"] = learning_curves(by_name, refs, cfg, primary, executor, combos)
    report["predictions"] = predictions(exps)
    report["_within_objects"] = within  # for figures; dropped before writing JSON
    return report


__all__ = ["EvaluationConfig", "run_evaluation", "image_scale", "make_networks", "parse_combination"]
