"""Online motion tracking: the estimate follows the simulator's true probe motion."""

import numpy as np
from rtdecode.offline.sim.drift import DriftSpec
from rtdecode.offline.sim.extracellular import spike_vector, unit_templates, voltage_recording
from rtdecode.offline.sim.probe import neuropixels1_probe

from rtdecode.sorting.matcher import TemplateMatcher
from rtdecode.sorting.motion import MotionTracker
from rtdecode.sorting.online import OnlineSorter
from rtdecode.sorting.preprocess import StreamingPreprocessor

FS = 30000.0
BLOCK = 696  # the GUI's block at 30 kHz


def _track(spec: str, duration_s: float = 40.0, channels: int = 64, n_units: int = 30, seed: int = 0):
    """Sort a drifting simulated stream block by block with the tracker on; returns the estimates
    (stream s, um) and the true motion."""
    probe = neuropixels1_probe(channels)
    pos = probe.contact_positions
    rng = np.random.default_rng(seed)
    units = np.stack(
        [
            rng.uniform(pos[:, 0].min() - 10, pos[:, 0].max() + 10, n_units),
            rng.uniform(pos[:, 1].min() + 40, pos[:, 1].max() - 40, n_units),
            rng.uniform(15, 45, n_units),
        ],
        axis=1,
    )
    templates, nbefore = unit_templates(pos, units, FS, seed + 1)
    n = int(duration_s * FS)
    rates = rng.uniform(2, 15, n_units)
    trains = [np.sort(rng.integers(200, n - 200, rng.poisson(r * duration_s))) for r in rates]
    spikes = spike_vector(trains, [rng.normal(1, 0.07, len(t)).clip(0.7, 1.3) for t in trains])
    motion = DriftSpec.parse(spec).motion(duration_s, 1, units[:, 1])
    noise = np.full(channels, 7.0, np.float32)
    rec = voltage_recording(spikes, templates, nbefore, noise, n, FS, seed + 2, motion, probe)
    sparsity = np.abs(templates).max(axis=1) > 0.1 * np.abs(templates).max(axis=(1, 2))[:, None]
    matcher = TemplateMatcher(templates, nbefore, sparsity, noise, pos)
    tracker = MotionTracker.for_templates(templates, pos, matcher.neighbours, rates, FS)
    sorter = OnlineSorter(matcher, StreamingPreprocessor(channels, FS, 300.0, 3, "median"), motion=tracker)
    est = []
    for s0 in range(0, n, 10 * BLOCK):
        x = rec.get_traces(start_frame=s0, end_frame=min(n, s0 + 10 * BLOCK))
        for b0 in range(0, len(x), BLOCK):
            sorter.process(x[b0 : b0 + BLOCK], s0 + b0)
            if tracker.estimated_at is not None and (not est or est[-1][0] != tracker.estimated_at / FS):
                est.append((tracker.estimated_at / FS, tracker.displacement_um))
    return np.array(est), motion


def test_the_estimate_follows_a_trend_and_a_step_within_a_few_microns():
    est, motion = _track("trend=15,step=12@20")
    t, d = est[:, 0], est[:, 1]
    err = np.abs(d - motion.at(t))
    assert len(est) >= 35  # one estimate per second of stream
    assert np.median(err) <= 2.0, np.round(np.c_[t, d, motion.at(t)], 1)
    settled = (t > 26) | (t < 19)  # 6 s after the step the estimate has caught up with it
    assert err[settled].max() <= 3.0, np.round(np.c_[t, d, motion.at(t)], 1)[settled]


def test_a_still_probe_reads_still():
    est, _ = _track("", duration_s=15.0)
    assert np.abs(est[:, 1]).max() <= 1.5


def test_the_pipeline_reports_motion_in_status_and_every_decision(bundle, tmp_path):
    from rtdecode.bundle import Bundle
    from rtdecode.config import parse_rig_config
    from rtdecode.pipeline import OnlinePipeline
    from tests.test_online import rig

    cfg = rig(16, tmp_path)
    p = OnlinePipeline(Bundle.load(bundle), cfg, log=lambda *_: None)
    st = p.motion_status()
    assert st["tracking"] == "on" and st["displacement_um"] is None and st["estimates"] == 0
    # the builder kept where the calibration's peaks lay along the shank: that is the reference
    assert Bundle.load(bundle).depth_profile is not None
    assert st["reference"] == "the calibration recording's own peaks"
    assert p.motion_um is None  # nothing estimated yet: decisions say null, not 0
    raw = cfg.model_dump(mode="json")
    raw["sorting"]["motion_tracking"] = False
    off = OnlinePipeline(Bundle.load(bundle), parse_rig_config(raw), log=lambda *_: None)
    assert off.sorter.motion is None
    assert off.motion_status() == {"tracking": "off ([sorting] motion_tracking = false)"}


def test_templates_moved_up_the_shank_look_like_the_units_seen_from_there():
    """``TemplateMatcher.moved`` (SpikeInterface's kriging kernel over the probe) turns a unit's
    calibration template into the one it has 20 um further up: much closer to the truth than the
    template left in place, with its main channel and sparsity moved along."""
    pos = neuropixels1_probe(64).contact_positions
    units = np.array([[16.0, 260.0, 25.0], [43.0, 400.0, 30.0], [27.0, 330.0, 20.0]])
    before, nbefore = unit_templates(pos, units, FS, 3)
    after, _ = unit_templates(pos, units + [0.0, 20.0, 0.0], FS, 3)  # the same units, 20 um up
    sparsity = np.abs(before).max(axis=1) > 0.1 * np.abs(before).max(axis=(1, 2))[:, None]
    matcher = TemplateMatcher(before, nbefore, sparsity, np.full(64, 7.0, np.float32), pos)
    moved = matcher.moved(20.0)

    def dense(m):
        w = np.zeros((m.n_units, m.length, m.n_channels), np.float32)
        for u in range(m.n_units):  # padding repeats the main channel with zero weights: add, not assign
            np.add.at(w[u].T, m.unit_channels[u], m.unit_weights[u].T)
        return w

    def rel(a):
        return np.linalg.norm((a - after).reshape(len(a), -1), axis=1) / np.linalg.norm(
            after.reshape(len(a), -1), axis=1
        )

    err_moved, err_still = rel(dense(moved)), rel(before)
    print(err_moved, err_still)
    assert np.all(err_moved < 0.7 * err_still) and np.all(err_moved < 0.5)
    y = pos[:, 1]
    main = lambda t: np.abs(t).max(axis=1).argmax(axis=1)  # noqa: E731
    assert np.allclose(y[main(dense(moved))], y[main(after)], atol=10)
    assert moved.displacement_um == 20.0 and matcher.displacement_um == 0.0
    assert moved.moved(0.0).displacement_um == 0.0  # always from the calibration position
    assert np.array_equal(moved.moved(0.0).unit_weights, matcher.unit_weights)


# -- the tracker on peaks placed by hand: 20 channels in a column, 20 um apart ----------------------
COLUMN = np.c_[np.zeros(20), np.arange(20) * 20.0]
NEAR = [np.flatnonzero(np.abs(COLUMN[:, 1] - y) <= 40.0) for y in COLUMN[:, 1]]
NEIGHBOURS = np.array([np.r_[n, -np.ones(5 - len(n), int)] for n in NEAR])  # within 40 um, -1 padded
RATE = 1000.0  # samples per second: one window (1 s) is 1000 samples


def _window(tracker: MotionTracker, second: int, peaks_per_channel: dict[int, int]) -> None:
    """One second of peaks, each on one channel only (its depth is that channel's)."""
    chan = np.concatenate([np.full(k, c) for c, k in peaks_per_channel.items()])
    t = np.arange(len(chan)) % 1000
    x = np.zeros((1000, len(COLUMN)))
    x[t, chan] = -1.0
    tracker.add(x, t, chan, second * 1000, (second + 1) * 1000)


def _calibrated(peaks_per_channel: dict[int, int], seconds: int = 20) -> MotionTracker:
    calibration = MotionTracker(COLUMN, NEIGHBOURS, np.zeros(0), np.zeros(0), RATE)
    calibration.record()
    for s in range(seconds):
        _window(calibration, s, peaks_per_channel)
    profile = calibration.calibration_profile()
    return MotionTracker.for_calibration(profile, COLUMN, NEIGHBOURS, RATE)


def test_peaks_piled_up_at_the_end_of_the_shank_do_not_hold_the_estimate_at_zero():
    # three units inside the shank and a pile of peaks at the last row (units past the end): the
    # units move one row up, the pile stays where it is -- as it does on a probe
    tracker = _calibrated({5: 60, 9: 60, 12: 60, 19: 300})
    for s in range(4):
        _window(tracker, s, {6: 60, 10: 60, 13: 60, 19: 300})
    assert tracker.reference_source == "the calibration recording's own peaks"
    assert tracker.displacement_um is not None and abs(tracker.displacement_um - 20.0) <= 1.0
    assert tracker.unresolved == 0


def test_the_calibration_profile_is_registered_over_the_calibrations_own_motion():
    calibration = MotionTracker(COLUMN, NEIGHBOURS, np.zeros(0), np.zeros(0), RATE)
    calibration.record()
    for s in range(40):  # the units one row further up for the second half of the calibration
        up = s >= 20
        _window(calibration, s, {5 + up: 60, 9 + up: 60, 12 + up: 60})
    profile = calibration.calibration_profile(chunk_s=10.0)
    # four chunks of 10 s: two at the start position, two 20 um up; zero is their average
    np.testing.assert_allclose(profile.shifts_um, [-10.0, -10.0, 10.0, 10.0])
    assert profile.peaks.sum() == 40 * 180
    # registered, every peak of a unit lies in one bin (unregistered, half of them 20 um away)
    assert np.sort(profile.peaks)[-3:].tolist() == [2400.0, 2400.0, 2400.0]


def test_a_best_shift_at_the_edge_of_the_range_is_not_an_estimate():
    tracker = _calibrated({5: 60, 9: 60, 12: 60})
    for s in range(3):
        _window(tracker, s, {5: 60, 9: 60, 12: 60})
    assert abs(tracker.displacement_um) < 0.5
    for s in range(3, 9):  # then peaks 80 um above the top unit only: the best shift is past +60 um
        _window(tracker, s, {16: 400})
    assert tracker.unresolved >= 1 and abs(tracker.displacement_um) < 60.0
