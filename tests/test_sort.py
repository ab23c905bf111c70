"""Templates for the bundle: ground truth on the daemon's preprocessing, and Kilosort 4 (slow)."""

import json

import numpy as np
import pytest
from rtdecode.offline.sort import (
    compare_to_ground_truth,
    ground_truth_sorting,
    preprocess_to_binary,
    read_recording,
    run_kilosort4,
    templates_from_sorting,
)

from rtdecode.sorting.preprocess import StreamingPreprocessor


def test_streaming_preprocessing_is_chunk_size_independent():
    rng = np.random.default_rng(0)
    x = (rng.normal(0, 10, (9000, 6)) + 300 + np.linspace(0, 50, 9000)[:, None]).astype(np.float32)
    whole = StreamingPreprocessor(6, 30000.0).process(x)
    pre = StreamingPreprocessor(6, 30000.0)
    cuts = [0, 1, 700, 701, 3000, 9000]
    parts = np.concatenate([pre.process(x[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)])
    np.testing.assert_allclose(parts, whole, atol=1e-3)
    assert abs(whole[3000:].mean()) < 1.0  # DC offset and drift removed
    with pytest.raises(ValueError, match="chunk must be"):
        pre.process(x[:, :5])


@pytest.mark.parametrize("n_channels", [5, 6, 383, 384])
@pytest.mark.parametrize("reference", ["median", "average", "none"])
def test_streaming_preprocessing_equals_sosfilt_and_numpy_reference(n_channels, reference):
    """The fused numba kernel is scipy's sosfilt followed by np.median / np.mean across channels."""
    from scipy.signal import sosfilt

    rng = np.random.default_rng(n_channels)
    x = (rng.normal(0, 10, (3000, n_channels)) + 300).astype(np.float32)
    x[::5, : n_channels // 2] = 0.0  # ties in the median
    pre = StreamingPreprocessor(n_channels, 30000.0, reference=reference)
    got = np.concatenate([pre.process(x[:1]), pre.process(x[1:1000]), pre.process(x[1000:])])
    want, _ = sosfilt(pre.sos, x.astype(np.float64), axis=0, zi=pre._zi0[:, :, None] * x[0][None, None, :])
    if reference == "median":
        want -= np.median(want, axis=1, keepdims=True)
    elif reference == "average":
        want -= want.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


@pytest.mark.parametrize("threads", [2, 3, 7])
@pytest.mark.parametrize("reference", ["median", "average", "none"])
def test_threaded_preprocessing_is_bit_for_bit_the_single_thread_one(threads, reference):
    rng = np.random.default_rng(threads)
    x = (rng.normal(0, 10, (2500, 96)) + 300).astype(np.float32)
    x[::7, :40] = 0.0  # ties in the median
    one = StreamingPreprocessor(96, 30000.0, reference=reference)
    many = StreamingPreprocessor(96, 30000.0, reference=reference, threads=threads)
    assert many.threads == threads
    cuts = [0, 1, 3, 700, 2100, 2500]  # chunks smaller than the thread count, too
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        np.testing.assert_array_equal(many.process(x[a:b]), one.process(x[a:b]))
    np.testing.assert_array_equal(many.zi, one.zi)  # the carried state too
    with pytest.raises(ValueError, match="threads must be >= 1"):
        StreamingPreprocessor(4, 30000.0, threads=0)


def test_ground_truth_templates_on_daemon_preprocessing(small_animal, tmp_path):
    m = json.loads((small_animal / "animal.json").read_text())
    rec = read_recording(small_animal / m["recording"], small_animal / "probe.json")
    assert rec.has_probe() and rec.get_num_channels() == m["channels"]
    prep, described = preprocess_to_binary(rec, tmp_path / "pre.raw")
    assert described["reference"] == "median"
    gt = ground_truth_sorting(small_animal, m["sample_rate"])
    sorting, templates, nbefore, sparsity, noise = templates_from_sorting(gt, prep)
    assert templates.shape[0] == len(sorting.unit_ids) and templates.shape[2] == m["channels"]
    assert sparsity.shape == (len(sorting.unit_ids), m["channels"]) and sparsity.any(axis=1).all()
    assert np.all((noise > 3) & (noise < 15))  # the simulator's ~7 uV noise after filtering
    # The biggest unit's template peaks on its true peak channel, at nbefore.
    true = np.load(small_animal / "ground_truth" / "templates.npy")
    u = int(np.abs(true).max(axis=(1, 2)).argmax())
    row = list(sorting.unit_ids).index(gt.unit_ids[u])
    assert np.abs(templates[row]).max(axis=0).argmax() == np.abs(true[u]).max(axis=0).argmax()
    assert abs(int(np.abs(templates[row]).max(axis=1).argmax()) - nbefore) <= 3


@pytest.mark.slow
def test_kilosort4_finds_the_big_units(small_animal, tmp_path):
    m = json.loads((small_animal / "animal.json").read_text())
    rec = read_recording(small_animal / m["recording"], small_animal / "probe.json")
    rec = rec.frame_slice(0, int(30 * m["sample_rate"]))
    sorting = run_kilosort4(rec, tmp_path / "ks4", torch_device="cpu")
    prep, _ = preprocess_to_binary(rec, tmp_path / "pre.raw")
    sorting, templates, *_ = templates_from_sorting(sorting, prep, min_spikes=5)
    gt = ground_truth_sorting(small_animal, m["sample_rate"]).frame_slice(0, int(30 * m["sample_rate"]))
    acc = compare_to_ground_truth(sorting, gt)
    print(
        f"Kilosort 4: {len(sorting.unit_ids)} units, {acc['well_detected']} of {acc['n_ground_truth_units']} "
        f"ground-truth units with accuracy >= 0.8, mean accuracy {acc['mean_accuracy']:.2f}"
    )
    assert acc["well_detected"] >= 3
