"""The simulator's files, read back by the field's own readers (acceptance of the foundation)."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from rtdecode.offline.sim.simulate import SimulationParams, simulate

from .conftest import manifest


def _recording_dir(folder):
    return folder / manifest(folder)["recording"]


def test_folder_layout(small_animal):
    m = manifest(small_animal)
    for rel in (
        m["nwb"],
        m["stimulus_log"],
        "stimuli/natural_scenes.npy",
        "stimuli/stimuli.json",
        m["probe"],
        "ground_truth/spikes.npy",
        "ground_truth/templates.npy",
        "ground_truth/units.csv",
    ):
        assert (small_animal / rel).is_file(), rel
    rec = _recording_dir(small_animal) / "Record Node 101" / "experiment1" / "recording1"
    assert (rec / "structure.oebin").is_file()
    assert (rec / "continuous" / "Neuropix-PXI-100.ProbeA-AP" / "continuous.dat").is_file()
    assert (rec / "events" / "Neuropix-PXI-100.ProbeA-AP" / "TTL" / "states.npy").is_file()
    assert (rec / "structure.oebin").read_bytes().count(b"\r\n") > 10  # JUCE-style CRLF JSON


def test_open_ephys_tools_and_spikeinterface_agree(small_animal):
    import spikeinterface.extractors as se
    from open_ephys.analysis import Session

    m = manifest(small_animal)
    oe = Session(str(_recording_dir(small_animal))).recordnodes[0].recordings[0]
    cont = oe.continuous[0]
    assert cont.metadata.num_channels == m["channels"]
    assert cont.metadata.sample_rate == m["sample_rate"]
    assert cont.sample_numbers[0] == m["first_sample_number"]
    assert cont.samples.shape == (m["n_samples"], m["channels"])

    si_rec = se.read_openephys(str(_recording_dir(small_animal)))
    assert si_rec.get_num_channels() == m["channels"]
    assert si_rec.get_sampling_frequency() == m["sample_rate"]
    assert si_rec.get_num_samples() == m["n_samples"]
    for start in (0, m["n_samples"] // 2, m["n_samples"] - 5000):
        a = cont.get_samples(start, start + 5000)  # float64 uV
        b = si_rec.get_traces(start_frame=start, end_frame=start + 5000, return_in_uV=True)  # float32 uV
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-3)
        raw = si_rec.get_traces(start_frame=start, end_frame=start + 5000)
        np.testing.assert_array_equal(raw, cont.samples[start : start + 5000])

    log = pd.read_csv(small_animal / m["stimulus_log"])
    ev = oe.events
    rising = ev[(ev.state == 1) & (ev.line == m["ttl_line"] + 1)].sample_number.to_numpy()
    np.testing.assert_array_equal(rising, log.onset_sample.to_numpy())

    si_ev = se.read_openephys_event(str(_recording_dir(small_animal)))
    times = si_ev.get_events(si_ev.channel_ids[0])["time"]
    np.testing.assert_allclose(times, log.onset_sample.to_numpy() / m["sample_rate"], atol=1e-6)


def test_spikes_are_in_the_voltage(small_animal):
    """Ground-truth spikes of a high-SNR unit show its template in the recorded voltage."""
    import spikeinterface.extractors as se

    rec = se.read_openephys(str(_recording_dir(small_animal)))
    spikes = np.load(small_animal / "ground_truth" / "spikes.npy")
    templates = np.load(small_animal / "ground_truth" / "templates.npy")
    units = pd.read_csv(small_animal / "ground_truth" / "units.csv")
    u = int(units.snr.idxmax())
    ch = int(units.peak_channel_index[u])
    nbefore = int(units.template_nbefore[u])
    st = spikes["sample_index"][spikes["unit_index"] == u][:200]
    traces = rec.get_traces(start_frame=0, end_frame=int(st.max()) + 200, return_in_uV=True)[:, ch].astype(float)
    snippets = np.stack([traces[s - nbefore : s - nbefore + templates.shape[1]] for s in st])
    avg = snippets.mean(0) - np.median(traces)
    corr = np.corrcoef(avg, templates[u, :, ch])[0, 1]
    print(f"unit {u}: snr {units.snr[u]:.1f}, correlation of spike-triggered average with template {corr:.3f}")
    assert corr > 0.95


def test_nwb_read_by_pynwb(small_animal):
    from pynwb import NWBHDF5IO

    m = manifest(small_animal)
    log = pd.read_csv(small_animal / m["stimulus_log"])
    with NWBHDF5IO(str(small_animal / m["nwb"]), "r") as io:
        nwb = io.read()
        assert nwb.stimulus_notes == "brain_observatory_1.1"
        assert len(nwb.units) == m["units"]
        ns = nwb.intervals["natural_scenes_presentations"].to_dataframe()
        sg = nwb.intervals["static_gratings_presentations"].to_dataframe()
        assert len(ns) == (log.family == "natural_scenes").sum()
        assert len(sg) == (log.family == "static_gratings").sum()
        assert set(ns.frame.astype(int)) == set(range(-1, 118))
        assert (sg.phase[sg.orientation.isna()] == "N/A").all()
        assert "running_speed" in nwb.processing["running"].data_interfaces
        spikes = np.load(small_animal / "ground_truth" / "spikes.npy")
        u0 = nwb.units.get_unit_spike_times(0)
        gt0 = spikes["sample_index"][spikes["unit_index"] == 0]
        np.testing.assert_allclose(u0, (gt0 + m["first_sample_number"]) / m["sample_rate"], atol=1e-9)


def test_nwb_read_by_our_reader(small_animal):
    from rtdecode.offline.allen import UnitFilter, open_session

    m = manifest(small_animal)
    log = pd.read_csv(small_animal / m["stimulus_log"])
    gt = pd.read_csv(small_animal / "ground_truth" / "units.csv")
    with open_session(small_animal / m["nwb"]) as s:
        invalid = s.invalid_stimulus_intervals()
        assert invalid.shape == (1, 2)
        ns = s.presentations("natural_scenes")
        ns_all = s.presentations("natural_scenes", drop_invalid=False)
        sg = s.presentations("static_gratings")
        assert len(ns_all) == (log.family == "natural_scenes").sum() == 119
        overlapping = ((ns_all.start_time < invalid[0, 1]) & (ns_all.stop_time > invalid[0, 0])).sum()
        assert overlapping >= 1 and len(ns) == len(ns_all) - overlapping
        assert sorted(ns_all.frame[~ns_all.is_blank].astype(int)) == list(range(118))
        assert ns_all.is_blank.sum() == 1
        conds = sg[~sg.is_blank][["orientation", "spatial_frequency", "phase"]].drop_duplicates()
        assert len(conds) == 120 and (sg.contrast[~sg.is_blank] == 0.8).all()
        assert sg.is_blank.sum() == (log.family.eq("static_gratings") & log.label.eq("blank")).sum()
        units = s.units()
        assert set(units.location) == {"VISp"}
        with open_session(small_animal / m["nwb"], UnitFilter.no_quality()) as unfiltered:
            everything = unfiltered.units()
        assert len(everything) == m["units"]
        assert set(everything.location) == {"VISp", "CA1"}
        visp_gt = set(gt.unit_id[gt.area == "VISp"])
        assert set(units.id) < visp_gt  # quality filter removes some VISp units
        spikes = np.load(small_animal / "ground_truth" / "spikes.npy")
        uid = int(units.id[0])
        row = int(gt.index[gt.unit_id == uid][0])
        st = s.spike_times(uid)
        gt_st = (spikes["sample_index"][spikes["unit_index"] == row] + m["first_sample_number"]) / m["sample_rate"]
        np.testing.assert_allclose(st, gt_st)
        trials = s.trials()
        assert set(trials.label) == {"natural", "artificial"}


def _digest(folder):
    h = hashlib.sha256()
    for rel in ("stimulus_log.csv", "ground_truth/spikes.npy", "stimuli/natural_scenes.npy"):
        h.update((folder / rel).read_bytes())
    return h.hexdigest()


def test_deterministic_for_a_seed(tmp_path):
    p = SimulationParams(animals=2, channels=8, units=6, repeats=1, seed=11, write_recording=False)
    a = simulate(p, tmp_path / "a")
    b = simulate(p, tmp_path / "b")
    assert [_digest(x) for x in a] == [_digest(x) for x in b]
    assert _digest(a[0]) != _digest(a[1])  # animals differ
    np.testing.assert_array_equal(
        np.load(a[0] / "stimuli/natural_scenes.npy"), np.load(a[1] / "stimuli/natural_scenes.npy")
    )  # same 118 scenes
    c = simulate(SimulationParams(**{**p.__dict__, "seed": 12}), tmp_path / "c")
    assert _digest(c[0]) != _digest(a[0])


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="channels = 999: expected 8 to 384"):
        SimulationParams(channels=999).validate()


def test_a_second_session_records_the_same_neurons_on_new_trials(tmp_path):
    """``sessions=2``: M0-s2 has M0's probe, units and templates, but its own trials, spikes and
    recording -- what the demo calibrates on (session 1) and decodes (session 2)."""
    params = SimulationParams(animals=1, channels=16, units=12, repeats=1, seed=11, sessions=2)
    (first,) = simulate(params, tmp_path)
    second = tmp_path / "M0-s2"
    m1, m2 = (json.loads((d / "animal.json").read_text()) for d in (first, second))
    assert (m1["animal"], m1["session"], m2["animal"], m2["session"]) == ("M0", 1, "M0", 2)
    assert m1["session_id"] != m2["session_id"]
    np.testing.assert_array_equal(
        np.load(first / "ground_truth" / "templates.npy"), np.load(second / "ground_truth" / "templates.npy")
    )
    u1, u2 = (pd.read_csv(d / "ground_truth" / "units.csv") for d in (first, second))
    assert u1.unit_id.tolist() == u2.unit_id.tolist()
    np.testing.assert_allclose(u1[["x_um", "y_um", "z_um"]], u2[["x_um", "y_um", "z_um"]])
    assert (first / "probe.json").read_text() == (second / "probe.json").read_text()
    s1, s2 = (pd.read_csv(d / "stimulus_log.csv") for d in (first, second))
    assert len(s1) == len(s2) and not np.array_equal(s1.onset_sample, s2.onset_sample)
    assert not np.array_equal(
        np.load(first / "ground_truth" / "spikes.npy"), np.load(second / "ground_truth" / "spikes.npy")
    )
    assert (second / "recording").is_dir() and (second / m2["nwb"]).is_file()
