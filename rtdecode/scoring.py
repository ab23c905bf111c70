"""Decisions scored against a stimulus log: which class each onset showed (a CSV with ``onset_sample``
and ``label`` columns; the demo writes one for a replayed session). The demo, ``rtdecode
report-session --labels`` and ``rtdecode dashboard --labels`` all score with this module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rtdecode.errors import RtdecodeError


def read_labels(path: Path) -> pd.Series:
    """``onset_sample -> label``; an error naming the file and the missing column(s) otherwise."""
    try:
        log = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise RtdecodeError(f"cannot read the stimulus log {path}: {err}") from None
    missing = {"onset_sample", "label"} - set(log.columns)
    if missing:
        raise RtdecodeError(
            f"{path}: no column(s) {', '.join(sorted(missing))}; a stimulus log needs onset_sample and label "
            f"(it has {', '.join(map(str, log.columns))})"
        )
    return log.drop_duplicates("onset_sample").set_index("onset_sample")["label"]


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = correct / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return (float(centre - half), float(centre + half))


def brier(p_natural: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared error of p(natural) against the 0/1 label (0 perfect, 0.25 a coin)."""
    p = np.asarray(p_natural, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    return float(np.mean((p - y) ** 2)) if len(p) else float("nan")


def score_decisions(decisions: list[dict], labels) -> dict:
    """Accuracy (95 % interval), Brier score and the share right among confident decisions, of the
    ``ok`` decisions whose onset has a natural/artificial label (``labels``: onset_sample -> label,
    a Series or a dict)."""
    ok = [d for d in decisions if d["status"] == "ok" and labels.get(d["onset_sample"]) in ("natural", "artificial")]
    y = np.array([labels[d["onset_sample"]] == "natural" for d in ok], dtype=bool)
    p = np.array([d["probabilities"]["natural"] for d in ok], dtype=np.float64)
    right = (p >= 0.5) == y
    confident = (p > 0.99) | (p < 0.01)
    lo, hi = wilson_interval(int(right.sum()), len(ok))
    return {
        "n": len(ok),
        "correct": int(right.sum()),
        "accuracy": float(right.mean()) if len(ok) else float("nan"),
        "ci95": [lo, hi],
        "brier": brier(p, y),
        "confident": int(confident.sum()),
        "confident_right": float(right[confident].mean()) if confident.any() else float("nan"),
        "natural_share_predicted": float((p >= 0.5).mean()) if len(ok) else float("nan"),
    }
