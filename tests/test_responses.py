import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtdecode.core.responses import (
    BaselineStats,
    RunningBaseline,
    SpikeIndex,
    rates_hz,
    seconds_to_samples,
    window_samples,
)


def test_half_open_window_edges():
    idx = SpikeIndex.from_trains([np.array([100, 150, 199, 200])])
    c = idx.counts(np.array([100]), (0, 100))
    assert c.tolist() == [[3]]  # 100 counts (start), 200 does not (end)
    assert idx.counts(np.array([101]), (0, 100)).tolist() == [[3]]  # 150, 199, 200
    assert idx.counts(np.array([100]), (-100, 0)).tolist() == [[0]]


def test_empty_units_and_trials():
    idx = SpikeIndex.from_trains([np.array([], dtype=np.int64), np.array([5, 6])])
    assert idx.counts(np.array([0, 1000]), (0, 10)).tolist() == [[0, 2], [0, 0]]
    assert idx.counts(np.array([], dtype=np.int64), (0, 10)).shape == (0, 2)


def test_windows_and_rates():
    assert window_samples((0, 250), 30000.0) == (0, 7500)
    assert window_samples((-200, 0), 30000.0) == (-6000, 0)
    with pytest.raises(ValueError):
        window_samples((10, 10), 30000.0)
    assert rates_hz(np.array([[5]]), (0, 7500), 30000.0)[0, 0] == pytest.approx(20.0)
    assert seconds_to_samples(np.array([0.5, 1 / 3]), 30000.0).tolist() == [15000, 10000]


@settings(max_examples=60, deadline=None)
@given(
    trains=st.lists(st.lists(st.integers(0, 5000), max_size=40), min_size=1, max_size=6),
    onsets=st.lists(st.integers(-100, 5100), max_size=12),
    start=st.integers(-300, 200),
    length=st.integers(1, 400),
)
def test_counts_match_naive_loop(trains, onsets, start, length):
    idx = SpikeIndex.from_trains([np.array(t, dtype=np.int64) for t in trains])
    got = idx.counts(np.array(onsets, dtype=np.int64), (start, start + length))
    want = np.array(
        [[sum(o + start <= s < o + start + length for s in t) for t in trains] for o in onsets],
        dtype=np.int64,
    ).reshape(len(onsets), len(trains))
    np.testing.assert_array_equal(got, want)


def test_baseline_fit_only_on_fit_trials_and_zero_std_guard():
    b = np.array([[1.0, 0.0], [3.0, 0.0], [100.0, 0.0]])
    stats = BaselineStats.fit(b, fit_trials=np.array([0, 1]), min_std_hz=1.0)
    assert stats.mean.tolist() == [2.0, 0.0]  # trial 2 not used
    assert stats.std[0] == pytest.approx(np.sqrt(2)) and stats.std[1] == 1.0  # floored
    r = stats.normalise(np.array([[2.0, 5.0]]))
    assert r.tolist() == [[0.0, 5.0]]
    with pytest.raises(ValueError, match="units"):
        stats.normalise(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        BaselineStats.fit(b, fit_trials=np.array([0]))


def test_a_running_baseline_follows_the_session_from_the_calibrations_statistics():
    """Units silent since calibration come back to R = 0, a unit firing at twice its rate to its
    calibration scale, a steady unit stays where it was; the recursion is the documented one."""
    rng = np.random.default_rng(0)
    cal = BaselineStats(np.array([10.0, 5.0, 8.0], np.float32), np.array([3.0, 2.0, 2.5], np.float32), np.arange(50))
    run = RunningBaseline(cal, trials=50)
    mean, var = cal.mean.astype(np.float64), cal.std.astype(np.float64) ** 2
    R = np.empty((1, 3), np.float32)
    for k in range(400):  # unit 0 silent, unit 1 at twice its rate, unit 2 as it was
        b = np.array([0.0, rng.normal(10.0, 4.0), rng.normal(8.0, 2.5)])
        run.update(b)
        d = b - mean
        mean, var = mean + d / 50, (1 - 1 / 50) * (var + d * d / 50)
        if k < 3:
            np.testing.assert_allclose(run.mean, mean)
            np.testing.assert_allclose(run.var, var)
        run.normalise(np.array([[0.0, 10.0, 8.0]], np.float32), out=R)
    assert run.seen == 400
    assert abs(R[0, 0]) < 0.01  # silent and nothing in its response: no longer -10 / 3 in every image
    assert run.stats.std[0] == 1.0  # floored at min_std_hz
    assert run.mean[1] == pytest.approx(10.0, abs=1.5) and run.stats.std[1] == pytest.approx(4.0, abs=1.2)
    assert run.mean[2] == pytest.approx(8.0, abs=1.0) and run.stats.std[2] == pytest.approx(2.5, abs=0.8)
    assert (cal.mean == [10.0, 5.0, 8.0]).all()  # the calibration's statistics are not touched
    with pytest.raises(ValueError, match="at least 1 trial"):
        RunningBaseline(cal, trials=0)
