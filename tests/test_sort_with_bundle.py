"""`rtdecode sort`: a recording sorted with a bundle's templates, read back by SpikeInterface."""

import subprocess
import sys

import numpy as np
import pytest

from .conftest import manifest


def _sort(recording, bundle, out, fmt):
    return subprocess.run(
        [sys.executable, "-m", "rtdecode", "sort", str(recording), "--bundle", str(bundle), "--out", str(out),
         "--format", fmt],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def sorted_folders(bundle, three_animals, tmp_path_factory):
    animal = three_animals[2]  # the bundle's own animal: its ground truth scores the sorting
    recording = animal / manifest(animal)["recording"]
    base = tmp_path_factory.mktemp("sorted")
    procs = {fmt: _sort(recording, bundle, base / fmt, fmt) for fmt in ("spikeinterface", "phy")}
    return recording, base, procs


def test_a_spikeinterface_sorting_loads_back_with_the_bundles_unit_ids_and_spikes(bundle, sorted_folders):
    import spikeinterface as si
    from rtdecode.offline.own_spikes import online_spike_trains

    from rtdecode.bundle import Bundle
    from rtdecode.pipeline import rig_config_for_bundle
    from rtdecode.sorting.templates import Templates

    recording, base, procs = sorted_folders
    proc = procs["spikeinterface"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "against the ground truth: mean accuracy" in proc.stdout
    b = Bundle.load(bundle)
    sorting = si.load(base / "spikeinterface")
    assert list(sorting.unit_ids) == list(b.unit_ids)  # a unit keeps the bundle's id
    trains, n, _ = online_spike_trains(
        recording, Templates.of(b, b.channel_positions), rig_config_for_bundle(b).sorting, b.manifest.preprocessing
    )
    assert sum(len(sorting.get_unit_spike_train(u)) for u in sorting.unit_ids) == n
    for u, train in zip(b.unit_ids, trains, strict=True):
        assert np.array_equal(sorting.get_unit_spike_train(u), train)  # the daemon's spikes, exactly


def test_a_phy_folder_opens_with_spikeinterfaces_phy_reader(bundle, sorted_folders):
    import spikeinterface as si
    import spikeinterface.extractors as se

    _, base, procs = sorted_folders
    proc = procs["phy"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    phy = se.read_phy(base / "phy")
    ours = si.load(base / "spikeinterface")
    assert phy.get_num_units() == ours.get_num_units()
    assert sorted(len(phy.get_unit_spike_train(u)) for u in phy.unit_ids) == sorted(
        len(ours.get_unit_spike_train(u)) for u in ours.unit_ids
    )
    assert (base / "phy" / "params.py").is_file() and (base / "phy" / "templates.npy").is_file()


def test_sort_refuses_a_used_folder_and_a_wrong_format_in_words(bundle, sorted_folders, tmp_path):
    recording, base, _ = sorted_folders
    proc = _sort(recording, bundle, base / "spikeinterface", "spikeinterface")
    assert proc.returncode == 2 and "exists and is not empty" in proc.stderr and "Traceback" not in proc.stderr
    proc = _sort(recording, bundle, tmp_path / "x", "kilosort")
    assert proc.returncode == 2 and "--format 'kilosort': expected one of spikeinterface, phy" in proc.stderr
