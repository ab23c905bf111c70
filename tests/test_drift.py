"""Probe drift in the simulator: the motion a spec describes, and templates moved by it."""

import json

import numpy as np
import pandas as pd
import pytest
from rtdecode.offline.sim.drift import DriftSpec, ProbeMotion
from rtdecode.offline.sim.extracellular import spike_vector, unit_templates, voltage_recording
from rtdecode.offline.sim.probe import neuropixels1_probe

FS = 30000.0


def _footprint_depths(spec: str, unit_y: list[float], split_s: float, duration_s: float = 4.0):
    """Noise-free traces of units firing every 50 ms under ``spec``: each unit's footprint centre
    along the shank (peak-to-peak-weighted contact depth) before and after ``split_s``."""
    probe = neuropixels1_probe(64)
    pos = probe.contact_positions
    units = np.array([[pos[:, 0].mean(), y, 25.0] for y in unit_y])
    templates, nbefore = unit_templates(pos, units, FS, 1)
    n = int(duration_s * FS)
    # units take turns, 25 ms apart, so their waveforms never overlap
    trains = [np.arange(int(0.1 * FS) + k * int(0.025 * FS), n - int(0.1 * FS), len(unit_y) * int(0.025 * FS))
              for k in range(len(unit_y))]  # fmt: skip
    spikes = spike_vector(trains, [np.ones(len(t)) for t in trains])
    motion = DriftSpec.parse(spec).motion(duration_s, 1, units[:, 1])
    x = voltage_recording(spikes, templates, nbefore, np.zeros(64), n, FS, 0, motion, probe).get_traces()
    width = templates.shape[1]

    def centre(sel):
        w = np.stack([x[s - nbefore : s - nbefore + width] for s in sel]).mean(axis=0)
        ptp = np.ptp(w, axis=0)
        return float((ptp * pos[:, 1]).sum() / ptp.sum())

    before = [centre(t[t < (split_s - 0.1) * FS]) for t in trains]
    after = [centre(t[t > (split_s + 0.1) * FS]) for t in trains]
    return np.array(before), np.array(after), motion


def test_a_step_moves_each_templates_footprint_by_the_simulated_amount():
    before, after, motion = _footprint_depths("step=20@2", [150.0], split_s=2.0)
    assert motion.at(np.array([1.0, 3.0])).tolist() == [0.0, 20.0]
    assert after[0] - before[0] == pytest.approx(20.0, abs=2.0)  # up the shank by 20 um


def test_non_rigid_motion_moves_deep_and_shallow_units_by_their_factor():
    before, after, motion = _footprint_depths("step=20@2,nonrigid=0.5", [110.0, 190.0], split_s=2.0)
    assert motion.unit_factor.tolist() == [0.5, 1.5]  # the tip end moves half, the far end 1.5 times
    np.testing.assert_allclose(after - before, [10.0, 30.0], atol=2.5)


def test_the_spec_reads_a_labs_words_and_names_what_it_cannot():
    s = DriftSpec.parse("trend=3, sine=5/60, step=15@120, between=20, nonrigid=0.3")
    assert (s.trend_um_per_min, s.sine_um, s.sine_period_s, s.step_um, s.step_at_s) == (3, 5, 60, 15, 120)
    assert (s.between_um, s.nonrigid, s.still) == (20, 0.3, False)
    assert DriftSpec.parse("").still
    m = s.motion(600.0, 2, np.array([0.0, 100.0]))
    t = np.array([0.0, 15.0, 60.0, 119.0, 121.0])
    want = 20 + 3 * t / 60 + 5 * np.sin(2 * np.pi * t / 60) + np.where(t >= 120, 15, 0)
    np.testing.assert_allclose(m.at(t), want, atol=1e-9)  # session 2 starts 20 um from session 1
    with pytest.raises(ValueError, match="unknown part 'wobble'"):
        DriftSpec.parse("wobble=3")
    with pytest.raises(ValueError, match="cannot read 'step=x@2'"):
        DriftSpec.parse("step=x@2")
    with pytest.raises(ValueError, match="nonrigid in"):
        DriftSpec.parse("nonrigid=1.5")


def test_simulate_saves_the_true_motion_of_each_session(tmp_path):
    from rtdecode.offline.sim.simulate import SimulationParams, simulate

    params = SimulationParams(channels=8, units=6, repeats=1, seed=3, write_recording=False, sessions=2,
                              drift="trend=2,step=10@30,between=15")  # fmt: skip
    (first,) = simulate(params, tmp_path)
    for folder, offset in ((first, 0.0), (tmp_path / "M0-s2", 15.0)):
        meta = json.loads((folder / "animal.json").read_text())
        m = ProbeMotion.load(folder / meta["motion"])
        assert m.times_s[-1] >= meta["duration_s"]
        np.testing.assert_allclose(m.at(np.array([0.0, 29.0, 31.0])), offset + np.array([0.0, 29 / 30, 31 / 30 + 10]))
    with pytest.raises(ValueError, match="--drift 'trend=fast'"):
        SimulationParams(drift="trend=fast").validate()


def test_later_sessions_lose_and_gain_units_and_change_their_rates(tmp_path):
    from rtdecode.offline.allen import open_session
    from rtdecode.offline.sim.simulate import SimulationParams, simulate
    from rtdecode.offline.sort import ground_truth_sorting

    spec = DriftSpec.parse("lost=0.2,gained=0.1,rates=0.5")
    assert (spec.lost, spec.gained, spec.rates, spec.still, spec.turnover) == (0.2, 0.1, 0.5, True, True)
    assert DriftSpec.parse(spec.text) == spec and spec.only_turnover() == spec
    assert DriftSpec.parse("between=15,trend=10,lost=0.1").only_turnover().text == "lost=0.1"
    with pytest.raises(ValueError, match="lost \\+ gained < 1"):
        DriftSpec.parse("lost=0.6,gained=0.5")

    params = SimulationParams(channels=16, units=20, repeats=1, seed=5, sessions=2, drift=spec.text)
    (first,) = simulate(params, tmp_path)
    second = tmp_path / "M0-s2"
    u1, u2 = (pd.read_csv(d / "ground_truth" / "units.csv").set_index("unit_id") for d in (first, second))
    lost, gained = u1.index[u1.present & ~u2.present], u1.index[~u1.present & u2.present]
    assert (len(lost), len(gained)) == (4, 2)  # 20 % and 10 % of 20 units, the same units in both files
    assert (u1.n_spikes[~u1.present] == 0).all() and (u2.n_spikes[~u2.present] == 0).all()
    assert (u1.n_spikes[u1.present] > 0).all() and (u2.n_spikes[u2.present] > 0).all()
    # session 1 is the reference; later rates change by a log-normal factor of spread 0.5
    assert (u1.rate_factor[u1.present] == 1.0).all()
    log_factor = np.log(u2.rate_factor[u2.present])
    assert 0.2 < log_factor.std() < 0.9 and not np.allclose(log_factor, 0.0)
    both = u1.present & u2.present
    spikes_ratio = u2.n_spikes[both] / u1.n_spikes[both]
    assert np.corrcoef(np.log(spikes_ratio), np.log(u2.rate_factor[both]))[0, 1] > 0.8  # the rates did change
    # the NWB file and the ground-truth sorting hold only the units that fire in that session
    for folder, units in ((first, u1), (second, u2)):
        assert set(open_session(next(folder.glob("session_*.nwb"))).all_units().id) == set(units.index[units.present])
        assert set(ground_truth_sorting(folder, 30000.0).unit_ids) == set(units.index[units.present])

    # without turnover an animal is what it was before turnover existed: every unit, factor 1
    plain = SimulationParams(channels=16, units=20, repeats=1, seed=5, write_recording=False)
    (still,) = simulate(plain, tmp_path / "b")
    u0 = pd.read_csv(still / "ground_truth" / "units.csv")
    assert u0.present.all() and (u0.rate_factor == 1.0).all()
