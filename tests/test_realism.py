"""The simulated population behaves like V1 data a reviewer can trust (numbers are printed)."""

import json

import numpy as np
import pandas as pd
from rtdecode.offline.allen import UnitFilter, open_session
from rtdecode.offline.sim.population import Population, true_linear_rf
from scipy.ndimage import zoom
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

from rtdecode.core.responses import SpikeIndex, rates_hz, seconds_to_samples, window_samples
from rtdecode.core.stimuli import AllenFrame, centred, render_static_gratings

from .conftest import manifest

FS = 30000.0


def _responses(folder):
    """R (trials x units, Hz, 30-280 ms after onset), stimuli S and labels, read from the NWB."""
    m = manifest(folder)
    with open_session(folder / m["nwb"], UnitFilter.no_quality()) as s:
        units = s.all_units().sort_values("row")
        trials = s.trials()
        trains = [seconds_to_samples(st, FS) for _, st in s.iter_spike_times(units.id)]
    win = window_samples((30, 280), FS)
    R = rates_hz(SpikeIndex.from_trains(trains).counts(seconds_to_samples(trials.start_time, FS), win), win, FS)
    geo = json.loads((folder / "stimuli" / "stimuli.json").read_text())["frame"]
    frame = AllenFrame(height=geo["height"], width=geo["width"])
    scenes = np.load(folder / "stimuli" / "natural_scenes.npy")
    S = np.empty((len(trials), *frame.shape), np.float32)
    ns = trials.family.eq("natural_scenes").to_numpy()
    S[ns] = scenes[trials.frame[ns].astype(int)]
    g = trials[~ns]
    S[~ns] = render_static_gratings(frame, g.orientation, g.spatial_frequency, g.phase)
    return R, S, trials.label.eq("natural").to_numpy(), frame


def test_linear_rf_estimate_recovers_true_rf_of_tuned_cells(realism_animal):
    R, S, _, frame = _responses(realism_animal)
    gt = pd.read_csv(realism_animal / "ground_truth" / "units.csv")
    f = 0.25
    X = zoom(centred(S), (1, f, f), order=1).reshape(len(S), -1)
    X -= X.mean(0)
    Rc = R - R.mean(0)
    lam = 10.0 * np.trace(X @ X.T) / len(X)
    W = X.T @ np.linalg.solve(X @ X.T + lam * np.eye(len(X)), Rc)  # ridge regression, dual form
    pop = Population(**{k: gt[k].to_numpy() for k in Population.__dataclass_fields__})
    true = zoom(true_linear_rf(pop, frame), (1, f, f), order=1).reshape(len(gt), -1)
    corr = np.array([np.corrcoef(W[:, u], true[u])[0, 1] for u in range(len(gt))])
    by_kind = {k: float(np.median(corr[gt.kind == k])) for k in sorted(set(gt.kind))}
    print("median correlation of ridge RF estimate with the true linear RF, by cell kind:", by_kind)
    assert by_kind["simple"] > 0.2
    assert (corr[gt.kind == "simple"] > 0.15).mean() > 0.8
    # Non-visual units have no receptive field: estimates must not correlate.
    assert abs(by_kind["non_visual"]) < 0.15


def test_classes_not_separable_by_total_count_but_by_population(realism_animal):
    R, _, natural, _ = _responses(realism_animal)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    total = R.sum(axis=1, keepdims=True)
    acc_total = cross_val_score(LogisticRegression(), total, natural, cv=cv).mean()
    acc_pop = cross_val_score(
        LogisticRegression(max_iter=3000), (R - R.mean(0)) / (R.std(0) + 1e-6), natural, cv=cv
    ).mean()
    print(
        f"natural vs artificial, 5-fold CV: total spike count {acc_total:.3f}, population GLM {acc_pop:.3f} "
        f"(mean population rate natural {total[natural].mean():.0f} Hz, "
        f"artificial {total[~natural].mean():.0f} Hz)"
    )
    assert acc_total < 0.8
    assert acc_pop > 0.7
    assert acc_pop > acc_total + 0.1


def test_running_modulates_responses(realism_animal):
    m = manifest(realism_animal)
    with open_session(realism_animal / m["nwb"]) as s:
        run = s.running_speed()
        trials = s.trials()
    R, _, _, _ = _responses(realism_animal)
    speed = np.interp(trials.start_time, run.time, run.velocity)
    fast, slow = speed > 5, speed < 1
    ratio = R[fast].mean() / R[slow].mean()
    print(f"running speed: {fast.mean():.0%} of trials running; population rate running/still = {ratio:.2f}")
    assert fast.sum() > 10 and slow.sum() > 10
    assert ratio > 1.1
