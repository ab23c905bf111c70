"""Online sorting against the bundle's templates: chunking does not change the result; engines agree
with ground truth."""

import numpy as np
import pandas as pd
import pytest

from rtdecode.bundle import Bundle
from rtdecode.sorting.matcher import TemplateMatcher
from rtdecode.sorting.online import OnlineSorter
from rtdecode.sorting.preprocess import StreamingPreprocessor
from rtdecode.sorting.spikeinterface_engine import SpikeInterfaceMatcher
from rtdecode.stream.recording import RecordingSource

SECONDS = 15


def _sort(bundle, src, matcher, block):
    sorter = OnlineSorter(matcher, StreamingPreprocessor(src.n_channels, src.sample_rate))
    n = int(SECONDS * src.sample_rate)
    out_s, out_u = [], []
    for i0 in range(0, n, block):
        i1 = min(n, i0 + block)
        s, u = sorter.process(src.samples[i0:i1].astype(np.float32) * src.bit_volts, int(src.sample_numbers[i0]))
        out_s.append(s)
        out_u.append(u)
    return np.concatenate(out_s) - int(src.sample_numbers[0]), np.concatenate(out_u), sorter.sorted_until


def _accuracy(bundle, animal, samples, units, until):
    from spikeinterface.comparison import compare_sorter_to_ground_truth
    from spikeinterface.core import NumpySorting

    gt = np.load(animal / "ground_truth" / "spikes.npy")
    ids = pd.read_csv(animal / "ground_truth" / "units.csv").unit_id.to_numpy()
    keep = gt["sample_index"] < until
    gts = NumpySorting.from_samples_and_labels(
        [gt["sample_index"][keep]], [ids[gt["unit_index"][keep]]], 30000.0, unit_ids=ids
    )
    found = NumpySorting.from_samples_and_labels([samples], [bundle.unit_ids[units]], 30000.0, unit_ids=bundle.unit_ids)
    perf = compare_sorter_to_ground_truth(gts, found, exhaustive_gt=True).get_performance()
    snr = pd.read_csv(animal / "ground_truth" / "units.csv").set_index("unit_id").snr
    return float(perf.accuracy.astype(float)[snr.reindex(perf.index) > 8].mean())


@pytest.fixture(scope="module")
def source(three_animals):
    return RecordingSource(three_animals[2] / "recording")


def test_our_matcher_is_chunk_size_invariant_and_finds_the_units(bundle, source, three_animals):
    b = Bundle.load(bundle)
    m = TemplateMatcher(b.templates, b.nbefore, b.sparsity, b.noise_levels, b.channel_positions)
    s1, u1, until = _sort(b, source, m, 300)
    s2, u2, _ = _sort(b, source, m, 1111)
    np.testing.assert_array_equal(s1[s1 < until - 2000], s2[s2 < until - 2000])
    np.testing.assert_array_equal(u1[s1 < until - 2000], u2[s2 < until - 2000])
    acc = _accuracy(b, three_animals[2], s1, u1, until - int(source.sample_numbers[0]))
    print(f"rtdecode matcher: mean accuracy {acc:.2f} on units with SNR > 8")
    assert acc > 0.7


@pytest.mark.parametrize("engine", ["nearest", "tdc-peeler"])
def test_spikeinterface_engines_run_online(bundle, source, three_animals, engine):
    b = Bundle.load(bundle)
    m = SpikeInterfaceMatcher(b, engine, 5.0, 30000.0)
    s, u, until = _sort(b, source, m, 700)
    acc = _accuracy(b, three_animals[2], s, u, until - int(source.sample_numbers[0]))
    print(f"{engine}: mean accuracy {acc:.2f} on units with SNR > 8")
    assert len(s) > 100 and acc > 0.4


def test_simultaneous_spikes_far_apart_on_the_probe_are_both_found():
    """Detection is locally exclusive: a spike on one end of the probe does not hide one on the other."""
    from rtdecode.offline.sim.probe import neuropixels1_probe

    pos = neuropixels1_probe(384).contact_positions
    length, nbefore = 60, 20
    shape = -np.exp(-0.5 * ((np.arange(length) - nbefore) / 3.0) ** 2)
    templates = np.zeros((3, length, 384), np.float32)
    for u, (c, amp) in enumerate([(10, 120.0), (300, 80.0), (14, 60.0)]):
        d = np.linalg.norm(pos - pos[c], axis=1)
        templates[u] = amp * shape[:, None] * np.exp(-d / 40.0)[None, :]
    sparsity = np.abs(templates).max(axis=1) > 0.1 * np.abs(templates).max(axis=(1, 2))[:, None]
    rng = np.random.default_rng(0)
    x = rng.normal(0, 5.0, (2000, 384)).astype(np.float32)
    truth = [(500, 0), (500, 1), (1200, 2), (1203, 1)]
    for t, u in truth:
        x[t - nbefore : t - nbefore + length] += templates[u]
    m = TemplateMatcher(templates, nbefore, sparsity, np.full(384, 5.0), pos)
    s, u = m.find(x, m.margin_left, len(x) - m.margin_right)
    assert sorted(zip(s.tolist(), u.tolist(), strict=True)) == sorted(truth)


def _small_unit_probe(n_channels=64, peak_sd=2.8):
    """A probe of white noise (5 uV) with one unit whose trough is ``peak_sd`` noise SDs on its best
    channel, spread over neighbours and samples as real spikes are, firing every 10 ms."""
    from rtdecode.offline.sim.probe import neuropixels1_probe

    pos = neuropixels1_probe(n_channels).contact_positions
    length, nbefore = 60, 20
    shape = -np.exp(-0.5 * ((np.arange(length) - nbefore) / 3.0) ** 2)
    d = np.linalg.norm(pos - pos[30], axis=1)
    template = (peak_sd * 5.0 * shape[:, None] * np.exp(-d / 30.0)[None, :]).astype(np.float32)[None]
    sparsity = np.abs(template[0]).max(axis=0)[None] > 0.1 * np.abs(template).max()
    x = np.random.default_rng(1).normal(0, 5.0, (60_000, n_channels)).astype(np.float32)
    spikes = np.arange(300, len(x) - 300, 300)
    for t in spikes:
        x[t - nbefore : t - nbefore + length] += template[0]
    return x, template, nbefore, sparsity, pos, spikes


def test_pooled_detection_finds_a_unit_too_small_for_any_one_channel():
    x, template, nbefore, sparsity, pos, spikes = _small_unit_probe()
    found = {}
    for detection in ("channel", "pooled"):
        m = TemplateMatcher(template, nbefore, sparsity, np.full(64, 5.0), pos, threshold=4.5, detection=detection)
        s, u = m.find(x, m.margin_left, len(x) - m.margin_right)
        near = np.abs(s[:, None] - spikes[None, :]) <= 2
        found[detection] = (near.any(axis=0).mean(), int((~near.any(axis=1)).sum()))  # share found, false ones
    # a 2.8-SD trough seldom crosses 4.5 SDs on its channel; summed over channels and samples it does
    assert found["channel"][0] < 0.25, found  # measured 0.15
    assert found["pooled"][0] > 0.95 and found["pooled"][1] <= 2, found  # measured 1.0 and none false


def test_the_pooled_detection_signal_is_the_filter_it_says_in_noise_sds():
    """The kernel equals the same filter written as a convolution and a matrix product, and on noise
    alone (each channel its own level) it has unit variance: the threshold is in noise SDs."""
    from scipy.ndimage import convolve1d

    from rtdecode.sorting.matcher import _pooled

    x, template, nbefore, sparsity, pos, _ = _small_unit_probe()
    levels = np.random.default_rng(2).uniform(3.0, 9.0, 64).astype(np.float32)
    noise = np.random.default_rng(3).normal(0, 1.0, (20_000, 64)).astype(np.float32) * levels
    m = TemplateMatcher(template, nbefore, sparsity, levels, pos)
    assert m.taps.size == 9 and np.isclose((m.taps**2).sum(), 1.0)  # 7 samples below half the trough: 9 taps
    z = np.zeros_like(noise)
    _pooled(noise, m.inv_noise, m.taps, m.band, 0, len(noise), z, m._row, m._acc)
    dense = np.zeros((64, 64))  # weights of each output channel (rows) on each input channel
    b = m.band.shape[0] // 2
    for k in range(m.band.shape[0]):
        for c in range(64):
            if 0 <= c + k - b < 64:
                dense[c, c + k - b] = m.band[k, c]
    want = convolve1d(noise * m.inv_noise, m.taps[::-1], axis=0, mode="constant") @ dense.T
    np.testing.assert_allclose(z, want, atol=1e-4)
    assert np.allclose((dense**2).sum(axis=1), 1.0) and (dense > 0).sum(axis=1).min() >= 4  # neighbours pooled
    assert z[10:-10].std(axis=0).mean() == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("version", ["0.106.0", "1.0.0", "0.104.2", "dev"])
def test_untested_spikeinterface_versions_are_refused_with_the_reason(version):
    from rtdecode.sorting.spikeinterface_engine import EngineUnavailable, check_spikeinterface_version

    with pytest.raises(EngineUnavailable, match=f'found {version}.*engine = "rtdecode"'):
        check_spikeinterface_version(version)
    check_spikeinterface_version("0.105.3")
