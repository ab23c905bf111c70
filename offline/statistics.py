"""Statistics a reviewer accepts: per-trial predictions, balanced accuracy, paired tests, permutation
tests, calibrated probabilities.

- :class:`Score` keeps every scored trial's label and p(natural) (so ``report.json`` can list the
  predictions) and summarises them: accuracy with its 95 % Wilson interval, balanced and per-class
  accuracy beside the majority baseline, the confusion matrix and the Brier score.
- :func:`mcnemar_exact` compares two models on the *same* trials (the exact binomial test on the
  trials where exactly one of them is right) -- what an "A beats B" sentence needs; overlapping
  intervals of two accuracies are not a test.
- :func:`permutation_p_value` turns a null distribution of accuracies (labels permuted, the whole
  pipeline refit) into a p-value with the +1 correction.
- :func:`fit_temperature` / :func:`apply_temperature` are temperature scaling (one scalar dividing
  the logits, fit by maximum likelihood on held-out trials); :func:`reliability` bins predicted
  probabilities against observed frequencies for a reliability diagram.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rtdecode.scoring import brier, wilson_interval  # noqa: F401  (the library's; re-exported here)

CLASS_NAMES = ("artificial", "natural")  # label 0, 1


def class_summary(labels: np.ndarray, predicted: np.ndarray) -> dict:
    """Balanced and per-class accuracy, the majority baseline and the confusion matrix."""
    y = np.asarray(labels, dtype=np.int64)
    yhat = np.asarray(predicted, dtype=np.int64)
    confusion = np.zeros((2, 2), dtype=np.int64)  # rows: true class, columns: predicted class
    np.add.at(confusion, (y, yhat), 1)
    per_class = {}
    for k, name in enumerate(CLASS_NAMES):
        n_k = int(confusion[k].sum())
        per_class[name] = float(confusion[k, k] / n_k) if n_k else float("nan")
    recalls = [v for v in per_class.values() if np.isfinite(v)]
    shares = np.bincount(y, minlength=2) / max(len(y), 1)
    return {
        "balanced_accuracy": float(np.mean(recalls)) if recalls else float("nan"),
        "per_class_accuracy": per_class,
        "majority_baseline": float(shares.max()) if len(y) else float("nan"),
        "confusion": {
            "rows": "true artificial, natural",
            "columns": "predicted artificial, natural",
            "counts": confusion.tolist(),
        },
    }


@dataclass
class Score:
    """Predictions of one model on scored trials, pooled over folds."""

    model: str
    trials: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)  # p(natural) per scored trial
    folds: list[int] = field(default_factory=list)
    fold_accuracy: list[float] = field(default_factory=list)

    def add(self, trials: np.ndarray, labels: np.ndarray, p_natural: np.ndarray, fold: int = 0) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        p = np.asarray(p_natural, dtype=np.float64)
        if len(p) != len(labels) or len(trials) != len(labels):
            raise ValueError(f"{self.model}: {len(trials)} trials, {len(labels)} labels, {len(p)} probabilities")
        self.trials.extend(map(int, trials))
        self.labels.extend(map(int, labels))
        self.probabilities.extend(map(float, p))
        self.folds.extend([int(fold)] * len(labels))
        self.fold_accuracy.append(float(((p >= 0.5) == labels).mean()) if len(labels) else float("nan"))

    @property
    def correct_mask(self) -> np.ndarray:
        return (np.asarray(self.probabilities) >= 0.5) == np.asarray(self.labels, dtype=bool)

    @property
    def correct(self) -> int:
        return int(self.correct_mask.sum())

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    def as_dict(self) -> dict:
        from scipy.stats import binomtest

        lo, hi = wilson_interval(self.correct, self.n)
        predicted = (np.asarray(self.probabilities) >= 0.5).astype(np.int64)
        classes = class_summary(np.asarray(self.labels), predicted)
        majority = classes["majority_baseline"]
        p_major = binomtest(self.correct, self.n, majority, alternative="greater").pvalue if self.n else float("nan")
        return {
            "model": self.model,
            "accuracy": self.accuracy,
            "ci95": [lo, hi],
            "n_trials": self.n,
            "fold_accuracy": self.fold_accuracy,
            **classes,
            "p_vs_majority": float(p_major),  # one-sided binomial: accuracy above the majority baseline
            "brier": brier(np.asarray(self.probabilities), np.asarray(self.labels)),
        }


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> dict:
    """Exact McNemar test of two models scored on the same trials (paired, two-sided)."""
    from scipy.stats import binomtest

    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs the same trials: {a.shape} vs {b.shape}")
    only_a = int((a & ~b).sum())
    only_b = int((~a & b).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {
        "test": "exact McNemar (two-sided binomial on discordant trials)",
        "n_trials": int(len(a)),
        "a_accuracy": float(a.mean()) if len(a) else float("nan"),
        "b_accuracy": float(b.mean()) if len(b) else float("nan"),
        "difference": float(a.mean() - b.mean()) if len(a) else float("nan"),
        "a_only_correct": only_a,
        "b_only_correct": only_b,
        "p_value": float(p),
    }


def paired(a: Score, b: Score, alpha: float = 0.05, **where) -> dict:
    """:func:`mcnemar_exact` of two scores on the same trials, with the verdict in words."""
    if a.trials != b.trials:
        raise ValueError(f"{a.model} and {b.model} were not scored on the same trials")
    res = mcnemar_exact(a.correct_mask, b.correct_mask)
    if res["p_value"] >= alpha:
        verdict = "no significant difference"
    else:
        verdict = f"{a.model if res['difference'] > 0 else b.model} better"
    return {"a": a.model, "b": b.model, **where, **res, "alpha": alpha, "verdict": verdict}


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """P(accuracy >= observed) under the permutation null, with the +1 correction (never 0)."""
    null = np.asarray(null, dtype=np.float64)
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + len(null)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature ``T > 0`` minimising the negative log-likelihood of ``softmax(logits / T)``."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    d = z[:, 1] - z[:, 0]  # two classes: p(natural) = sigmoid(d / T)
    y = np.asarray(labels, dtype=np.float64)
    if len(d) == 0 or not np.isfinite(d).all():
        return 1.0

    def nll(log_t: float) -> float:
        s = d / np.exp(log_t)
        return float(np.mean(np.logaddexp(0, s) - y * s))

    res = minimize_scalar(nll, bounds=(np.log(1e-2), np.log(1e4)), method="bounded")
    return float(np.exp(res.x))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """p(natural) of ``softmax(logits / T)``."""
    z = np.asarray(logits, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-(z[:, 1] - z[:, 0]) / temperature))


def reliability(p_natural: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict:
    """Predicted p(natural) in equal-width bins against the observed share of natural trials."""
    p = np.asarray(p_natural, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    n = np.bincount(which, minlength=bins)
    mean_p = np.bincount(which, weights=p, minlength=bins) / np.maximum(n, 1)
    observed = np.bincount(which, weights=y, minlength=bins) / np.maximum(n, 1)
    ece = float(np.sum(n * np.abs(mean_p - observed)) / max(len(p), 1))
    return {
        "edges": edges.tolist(),
        "n": n.tolist(),
        "mean_predicted": [float(v) if k else None for v, k in zip(mean_p, n, strict=True)],
        "observed": [float(v) if k else None for v, k in zip(observed, n, strict=True)],
        "expected_calibration_error": ece,
    }
