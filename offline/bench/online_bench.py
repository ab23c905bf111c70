"""``rtdecode bench online``: the daemon's path at rig scale, measured side by side (DESIGN section 8).

Everything runs on streams this module makes (nothing can be downloaded here): Neuropixels 1.0
geometry (beyond 384 channels, 384-channel shanks side by side, 250 um apart), SpikeInterface
templates at random unit positions, Poisson spike trains, white plus common-mode noise.

1. **Sorting, scaling in channels** (64 -> 384 -> 1536 by default): each stream goes through
   :class:`~rtdecode.sorting.online.OnlineSorter` in GUI-like variable blocks, once per engine
   (rtdecode's matcher, SpikeInterface's ``tdc-peeler`` and ``nearest``) with the same templates
   (ground truth on the daemon's preprocessing, through the builder's SortingAnalyzer code);
   wall time split into preprocessing and matching, real-time factor, and accuracy against ground
   truth (SpikeInterface's ``compare_sorter_to_ground_truth``), all units and units with SNR >= 5.
2. **The whole daemon path** on a 384-channel stream with a stimulus onset every 250 ms: the
   stream is written as an Open Ephys Binary recording, a *timing bundle* is built with the real
   code (ground-truth templates, baseline and preferred stimuli from the stream's own spikes,
   GoogLeNet at the rig's 224 px fitted to arbitrary labels, exported and parity-checked), the
   replayer publishes it from a separate process, and ``rtdecode serve``'s daemon decodes every
   trial. Reported: stage latencies p50 / p99 from block arrival to the decision on the PUB socket,
   and capacity (stream seconds per second of worker time). The timing bundle's decisions carry
   no meaning; its costs are those of a real bundle of the same size.

Timings on a shared machine are noisy: the JSON keeps every raw number with the machine and
versions; compare ratios taken in one run.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rtdecode.offline.sim.drift import DriftSpec, ProbeMotion
from rtdecode.offline.sim.extracellular import spike_vector, unit_templates, voltage_recording
from rtdecode.offline.sim.probe import neuropixels1_probe
from rtdecode.replay.replayer import ZMQ_INTERFACE

from rtdecode.manifest import ManifestContent, Preprocessing
from rtdecode.parameters import default
from rtdecode.sorting.spikeinterface_engine import EngineUnavailable
from rtdecode.sorting.templates import Templates

FS = 30000.0
SHANK_PITCH_UM = 250.0
ENGINES = ("rtdecode", "tdc-peeler", "nearest")


@dataclass
class SyntheticStream:
    traces: np.ndarray  # (samples, channels) float32 uV, raw (offsets and common noise included)
    positions: np.ndarray  # (channels, 2) um
    spikes: np.ndarray  # spike_vector: sample_index, unit_index, amplitude
    raw_templates: np.ndarray  # (units, samples, channels) as injected
    nbefore: int
    noise_levels: np.ndarray  # (channels,) uV
    snr: np.ndarray  # (units,) peak amplitude / noise on the peak channel
    motion: ProbeMotion | None = None  # the probe's true motion (drift), or None for a still probe

    @property
    def n_channels(self) -> int:
        return self.traces.shape[1]

    @property
    def n_units(self) -> int:
        return self.raw_templates.shape[0]

    @property
    def duration_s(self) -> float:
        return self.traces.shape[0] / FS


def probe_positions(n_channels: int) -> np.ndarray:
    """Neuropixels 1.0 bank-0 contacts; more than 384 channels are further 384-channel shanks."""
    base = neuropixels1_probe(min(n_channels, 384)).contact_positions
    n_shanks = -(-n_channels // 384)
    tiled = np.concatenate([base + np.array([k * SHANK_PITCH_UM, 0.0]) for k in range(n_shanks)])
    return tiled[:n_channels]


def synthetic_stream(
    n_channels: int,
    duration_s: float,
    units_per_channel: float = 0.4,
    rate_hz: tuple[float, float] = (3.0, 12.0),
    noise_uv: float = 7.0,
    common_noise_uv: float = 2.5,
    seed: int = 0,
    drift: str = "",
) -> SyntheticStream:
    """A raw stream with known spikes (see the module docstring); ``drift``: a probe motion
    (``rtdecode.offline.sim.drift``) that moves the templates along the shank (one shank, <= 384 ch)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, n_channels, 0xBE]))
    pos = probe_positions(n_channels)
    n_units = max(4, int(round(units_per_channel * n_channels)))
    shank = rng.integers(0, -(-n_channels // 384), n_units)
    on_shank = [pos[(pos[:, 0] >= k * SHANK_PITCH_UM - 1) & (pos[:, 0] < (k + 1) * SHANK_PITCH_UM - 1)] for k in shank]
    unit_pos = np.array(
        [
            [rng.uniform(p[:, 0].min() - 12, p[:, 0].max() + 12), rng.uniform(p[:, 1].min(), p[:, 1].max()), 0.0]
            for p in on_shank
        ]
    )
    unit_pos[:, 2] = rng.uniform(15, 50, n_units)
    templates, nbefore = unit_templates(pos, unit_pos, FS, int(rng.integers(2**31)))
    n = int(round(duration_s * FS))
    margin = templates.shape[1]
    samples, amps = [], []
    for rate in rng.uniform(*rate_hz, n_units):  # set-up, once per unit
        s = np.sort(rng.integers(margin, n - margin, rng.poisson(rate * duration_s)))
        s = s[np.concatenate([[True], np.diff(s) > int(0.002 * FS)])]  # 2 ms refractory
        samples.append(s)
        amps.append(rng.normal(1.0, 0.07, len(s)).clip(0.7, 1.3).astype(np.float32))
    spikes = spike_vector(samples, amps)
    noise_levels = noise_uv * rng.uniform(0.85, 1.15, n_channels)
    spec = DriftSpec.parse(drift)
    motion, probe = None, None
    if not spec.still:
        if n_channels > 384:
            raise ValueError(f"drift is simulated on one shank (<= 384 channels), not {n_channels}")
        motion, probe = spec.motion(duration_s, 1, unit_pos[:, 1]), neuropixels1_probe(n_channels)
    noise_seed = int(rng.integers(2**31))
    rec = voltage_recording(spikes, templates, nbefore, noise_levels, n, FS, noise_seed, motion, probe)
    traces = np.asarray(rec.get_traces(), dtype=np.float32)
    traces += rng.normal(0, 25.0, n_channels).astype(np.float32)[None, :]
    traces += rng.normal(0, common_noise_uv, (n, 1)).astype(np.float32)
    peak = np.abs(templates).max(axis=1)
    snr = peak.max(axis=1) / noise_levels[peak.argmax(axis=1)]
    return SyntheticStream(traces, pos, spikes, templates, nbefore, noise_levels.astype(np.float32), snr, motion)


@dataclass(frozen=True)
class SortingTemplates(Templates):
    """A bundle's templates, computed by the builder's code on the daemon's preprocessing, with the
    ground-truth sorting they were made from (to score a matcher against)."""

    gt_sorting: object = None


def templates_on_preprocessing(stream: SyntheticStream) -> SortingTemplates:
    """Ground-truth templates on the builder's default preprocessing (the timing bundle's)."""
    from probeinterface import Probe
    from rtdecode.offline.sort import templates_from_sorting
    from spikeinterface.core import NumpyRecording, NumpySorting

    from rtdecode.sorting.preprocess import StreamingPreprocessor

    p = Preprocessing.defaults()
    prep = StreamingPreprocessor(stream.n_channels, FS, p.highpass_hz, p.order, p.reference).process(stream.traces)
    rec = NumpyRecording([prep], sampling_frequency=FS)
    probe = Probe(ndim=2, si_units="um")
    probe.set_contacts(positions=stream.positions, shapes="square", shape_params={"width": 12})
    probe.set_device_channel_indices(np.arange(stream.n_channels))
    rec.set_probe(probe)
    ids = np.arange(stream.n_units)
    gt = NumpySorting.from_samples_and_labels(
        [stream.spikes["sample_index"]], [stream.spikes["unit_index"]], FS, unit_ids=ids
    )
    sorting, templates, nbefore, sparsity, noise = templates_from_sorting(gt, rec)
    t = SortingTemplates(
        np.asarray(sorting.unit_ids),
        templates,
        nbefore,
        sparsity,
        noise,
        stream.positions,
        gt_sorting=gt.select_units(sorting.unit_ids),
    )
    return replace(t, depth_profile=_calibration_profile(stream, t))


def _calibration_profile(stream: SyntheticStream, t: SortingTemplates):
    """Where the stream's detected peaks lie along the shank, as ``rtdecode build``'s first online
    pass records it over a calibration recording (templates held still): the tracker's reference."""
    from rtdecode.config import SortingConfig
    from rtdecode.pipeline import make_online_sorter
    from rtdecode.stream.recording import block_sizes

    sorter = make_online_sorter(t, stream.n_channels, FS, SortingConfig(), Preprocessing.defaults())
    sorter.moving = None
    sorter.motion.record()
    start = 0
    for stop in np.cumsum(block_sizes(len(stream.traces), FS, None, 0, variable=True)):
        sorter.process(stream.traces[start:stop], start)
        start = stop
    return sorter.motion.calibration_profile()


def _timed(fn, acc: list):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[0] += time.perf_counter() - t0

    return wrapper


def run_sorter(stream: SyntheticStream, t: SortingTemplates, engine: str, seed: int = 0, motion: bool = True) -> dict:
    """Stream ``stream`` through OnlineSorter with ``engine`` in GUI-like blocks; time and score it
    (``motion``: the ``[sorting] motion_tracking`` setting -- estimate the probe's motion and match
    against templates moved with it)."""
    from rtdecode.offline.sort import compare_to_ground_truth
    from spikeinterface.core import NumpySorting

    from rtdecode.config import SortingConfig
    from rtdecode.pipeline import make_online_sorter
    from rtdecode.stream.recording import block_sizes

    # the daemon's own assembly of preprocessing + matcher (rtdecode.pipeline), engine by engine
    cfg = SortingConfig(engine=engine, motion_tracking=motion)
    sorter = make_online_sorter(t, stream.n_channels, FS, cfg, Preprocessing.defaults())
    matcher = sorter.matcher
    warm = np.random.default_rng(0).normal(0, 1, (4096, stream.n_channels)).astype(np.float32) * t.noise_levels
    matcher.find(warm, matcher.margin_left, len(warm) - matcher.margin_right)  # JIT before the clock
    if hasattr(matcher, "warmup"):
        matcher.warmup()
    sorter.pre.process(warm)
    sorter.reset()
    # matching = the sorter's time less preprocessing and motion tracking (the matcher it uses may
    # change hands when the templates move, so it is timed from outside)
    pre_s, sort_s, motion_s = [0.0], [0.0], [0.0]
    sorter.pre.process = _timed(sorter.pre.process, pre_s)
    sorter.process = _timed(sorter.process, sort_s)
    if sorter.motion is not None:
        sorter.motion.add = _timed(sorter.motion.add, motion_s)
    found_s, found_u = [], []
    stops = np.cumsum(block_sizes(len(stream.traces), FS, None, seed, variable=True))
    t0 = time.perf_counter()
    start = 0
    tracker, estimates = sorter.motion, []
    for stop in stops:  # the stream arrives block by block; this is the daemon's loop
        s, u = sorter.process(stream.traces[start:stop], start)
        found_s.append(s)
        found_u.append(u)
        start = stop
        if tracker is not None and tracker.estimated_at is not None:
            if not estimates or estimates[-1][0] != tracker.estimated_at:
                estimates.append((tracker.estimated_at, tracker.displacement_um))
    wall = time.perf_counter() - t0
    s = np.concatenate(found_s)
    u = np.asarray(t.unit_ids)[np.concatenate(found_u)]
    sorting = NumpySorting.from_samples_and_labels([s], [u], FS, unit_ids=t.unit_ids)
    acc = compare_to_ground_truth(sorting, t.gt_sorting)
    per_unit = np.array([acc["per_unit"][str(k)] for k in t.unit_ids])
    good = stream.snr[np.asarray(t.unit_ids)] >= 5
    return {
        "engine": engine,
        "channels": stream.n_channels,
        "units": int(len(t.unit_ids)),
        "duration_s": stream.duration_s,
        "wall_s": wall,
        "preprocess_s": pre_s[0],
        "match_s": sort_s[0] - pre_s[0] - motion_s[0],
        "motion_s": motion_s[0] if sorter.motion is not None else None,
        "motion_tracking": sorter.motion is not None,
        "templates_moved": None if sorter.moving is None else sorter.moving.status(),
        "realtime_factor": stream.duration_s / wall,
        "mean_accuracy": acc["mean_accuracy"],
        "mean_accuracy_snr5": float(per_unit[good].mean()) if good.any() else None,
        "units_snr5": int(good.sum()),
        "well_detected": acc["well_detected"],
        "spikes_found": int(len(s)),
        "spikes_true": int((np.isin(stream.spikes["unit_index"], t.unit_ids)).sum()),
        "motion": _motion_error(estimates, stream.motion, stream.duration_s) if tracker is not None else None,
    }


def _motion_error(estimates: list[tuple[int, float]], truth: ProbeMotion | None, duration_s: float) -> dict:
    """The tracker's estimates against the stream's true motion (a still probe: against 0). With
    drift, the benchmark's templates and the tracker's reference profile are learnt with the probe
    still, at the motion's zero (the stream's start, before any trend or step): the tracker's zero."""
    if not estimates:
        return {"estimates": 0}
    at, est = (np.array(v, dtype=np.float64) for v in zip(*estimates, strict=True))
    if truth is None:
        true = np.zeros(len(at))
    else:
        true = truth.at(at / FS)
    err = np.abs(est - true)
    return {
        "estimates": len(at),
        "median_abs_error_um": float(np.median(err)),
        "p90_abs_error_um": float(np.percentile(err, 90)),
        "true_range_um": [float(true.min()), float(true.max())],
    }


def bench_sorting(
    channels: list[int],
    duration_s: float,
    engines: list[str],
    si_max_channels: int = 384,
    seed: int = 0,
    log=print,
    drift: str = "",
) -> list[dict]:
    rows = []
    for c in channels:
        log(f"sorting: generating {c} channels x {duration_s:g} s ...")
        stream = synthetic_stream(c, duration_s, seed=seed, drift=drift)
        # the templates are a calibration's: with drift, learnt on the same stream with the probe
        # still (same spikes and noise) -- where the lab's calibration session left them
        t = templates_on_preprocessing(synthetic_stream(c, duration_s, seed=seed) if drift else stream)
        # with drift, rtdecode runs twice: motion tracking on (templates follow the probe) and off
        runs = [(e, True) for e in engines] + ([("rtdecode", False)] if drift and "rtdecode" in engines else [])
        for engine, motion in runs:
            if engine != "rtdecode" and c > si_max_channels:
                log(f"  {engine}: skipped above {si_max_channels} channels (--si-max-channels)")
                continue
            try:
                row = run_sorter(stream, t, engine, seed, motion)
            except EngineUnavailable as err:
                log(f"  {engine}: skipped ({err})")
                continue
            moved = row["templates_moved"]
            log(
                f"  {engine}{'' if motion or engine != 'rtdecode' else ' (motion tracking off)'}: "
                f"{row['realtime_factor']:.2f} x real time (preprocessing {row['preprocess_s']:.2f} s, "
                f"matching {row['match_s']:.2f} s of {row['wall_s']:.2f} s), accuracy {row['mean_accuracy']:.2f}"
                + (
                    f", motion error median {m['median_abs_error_um']:.2f} um over {m['estimates']} estimates"
                    if (m := row["motion"]) and m["estimates"]
                    else ""
                )
                + (f", templates moved {moved['moves']} times (now {moved['applied_um']:g} um)" if moved else "")
            )
            rows.append(row)
        del stream
    return rows


# --------------------------------------------------------------------------------------------
# Whole path


def write_recording(stream: SyntheticStream, out: Path, onsets: np.ndarray, ttl_line: int, first_sample: int) -> Path:
    from rtdecode.offline.sim.openephys_writer import NEUROPIXELS_AP_BIT_VOLTS, BinaryRecordingWriter

    writer = BinaryRecordingWriter(
        out,
        FS,
        stream.n_channels,
        first_sample_number=first_sample,
        stream_name="ProbeA-AP",
        bit_volts=NEUROPIXELS_AP_BIT_VOLTS,
    )
    for s0 in range(0, len(stream.traces), int(5 * FS)):
        writer.append(stream.traces[s0 : s0 + int(5 * FS)])
    pulse = int(0.010 * FS)
    on = first_sample + onsets
    writer.add_ttl(np.concatenate([on, on + pulse]), ttl_line, np.concatenate([np.ones(len(on)), np.zeros(len(on))]))
    writer.close()
    return out


def write_timing_bundle(
    stream: SyntheticStream,
    t: SortingTemplates,
    onsets: np.ndarray,
    out: Path,
    image_size: int,
    ttl_line: int,
    first_sample: int,
    seed: int = 0,
) -> Path:
    """A complete bundle from the stream's own spikes; the classifier is fitted to arbitrary labels."""
    from rtdecode.offline.classifiers import NetworkClassifier
    from rtdecode.offline.export import check_parity, export_onnx, quantize_int8

    from rtdecode.bundle import CLASS_NAMES, BundleContents
    from rtdecode.core.model_input import ImageNormalisation
    from rtdecode.core.neural_image import neural_images, preferred_stimuli
    from rtdecode.core.responses import BaselineStats, SpikeIndex, rates_hz, window_samples

    rng = np.random.default_rng(seed)
    keep = np.isin(stream.spikes["unit_index"], t.unit_ids)
    remap = np.searchsorted(t.unit_ids, stream.spikes["unit_index"][keep])
    index = SpikeIndex.from_spikes(stream.spikes["sample_index"][keep], remap, len(t.unit_ids))
    resp_ms, base_ms = default("build.response_window_ms"), default("build.baseline_window_ms")
    resp, base = window_samples(resp_ms, FS), window_samples(base_ms, FS)
    stats = BaselineStats.fit(rates_hz(index.counts(onsets, base), base, FS))
    R = stats.normalise(rates_hz(index.counts(onsets, resp), resp, FS))
    S = rng.uniform(0, 255, (len(onsets), image_size * image_size)).astype(np.float32)
    PS = preferred_stimuli(R, S)
    images = neural_images(R, PS)
    norm = ImageNormalisation.fit(images, image_size)
    x = norm.to_model_input(images[:32])
    clf = NetworkClassifier(None, "head", head_epochs=50, seed=seed, image_size=image_size)
    model, _ = clf.fit(x, np.arange(len(x)) % 2)
    work = Path(tempfile.mkdtemp(prefix="timing-bundle-"))
    onnx_path = export_onnx(model, work / "model.onnx", image_size)
    parity = check_parity(model, onnx_path, x[:8])
    # The timing bundle's decisions mean nothing (arbitrary labels), so its INT8 model is kept whatever
    # its agreement (recorded in the manifest): what it costs is what is measured.
    int8 = quantize_int8(onnx_path, work / "model.int8.onnx", x, norm.to_model_input(images), min_agreement=0.0)
    import torch

    torch.save(model.state_dict(), work / "model.pt")
    manifest = ManifestContent(
        target=f"synthetic-{stream.n_channels}ch (timing bundle: decisions carry no meaning)",
        train_sessions=[],
        templates_method="ground-truth",
        sample_rate=FS,
        channel_count=stream.n_channels,
        stream_name="ProbeA-AP",
        channel_map=list(range(stream.n_channels)),
        first_sample_number=first_sample,
        ttl_line=ttl_line,
        windows={"response_ms": list(resp_ms), "baseline_ms": list(base_ms)},
        preprocessing=Preprocessing.defaults().model_dump(exclude_none=True),
        class_names=list(CLASS_NAMES),
        image_size=image_size,
        normalisation=norm.as_dict(),
        n_units=int(len(t.unit_ids)),
        unit_ids=t.unit_ids.tolist(),
        classifier=clf.description + " (fitted to arbitrary labels)",
        architecture=clf.architecture,
        int8=int8.as_manifest(),
        heldout_accuracy=None,
    )
    return BundleContents(
        manifest=manifest,
        templates=t,
        baseline=stats,
        preferred_stimuli=PS.reshape(-1, image_size, image_size),
        model_onnx=onnx_path,
        model_pt=work / "model.pt",
        report={"purpose": "timing", "onnx_parity": parity.as_dict()},
        model_int8_onnx=int8.path,
    ).write(out, overwrite=True)


def bench_whole_path(
    n_channels: int,
    duration_s: float,
    image_size: int,
    speed: float | None,
    work_dir: Path,
    seed: int = 0,
    log=print,
    cfg=None,
    preload: bool | None = None,
    precision: str = "fp32",
    protocol: str = ZMQ_INTERFACE,
    preprocess_threads: int = 1,
    drift: str = "",
) -> dict:
    """Replay a synthetic stream (separate process) through the daemon; latency and capacity.

    ``cfg``: the rig config (ports, sorting, trials); default ``rig_configs/replay_local.toml``.
    ``preload`` (default: when ``speed`` is max): the replayer renders every message before it starts
    sending, so a flat-out run measures the daemon's path rather than the replayer's rendering."""
    if preload is None:
        preload = speed is None
    from rtdecode.offline.bench.session import replay_through_daemon

    from rtdecode import rig_configs

    log(
        f"whole path: generating {n_channels} channels x {duration_s:g} s, onsets every 250 ms"
        + (f", the probe drifting ({drift})" if drift else "")
        + " ..."
    )
    stream = synthetic_stream(n_channels, duration_s, seed=seed, drift=drift)
    first_sample = 90_000
    onsets = np.arange(int(1.0 * FS), len(stream.traces) - int(0.5 * FS), int(0.25 * FS))
    if cfg is None:
        cfg = rig_configs.load("replay_local.toml")
    cfg = cfg.model_copy(
        update={
            "stream": cfg.stream.model_copy(update={"channel_count": n_channels, "protocol": protocol}),
            "model": cfg.model.model_copy(update={"precision": precision, "backend": "onnxruntime"}),
            "sorting": cfg.sorting.model_copy(update={"preprocess_threads": preprocess_threads}),
        }
    )
    line = cfg.trials.ttl_line
    # on the timing bundle's preprocessing, the builder's defaults; with drift, learnt with the probe still
    t = templates_on_preprocessing(synthetic_stream(n_channels, duration_s, seed=seed) if drift else stream)
    rec = write_recording(stream, work_dir / "recording", onsets, line, first_sample)
    log("whole path: building the timing bundle (GoogLeNet export + parity) ...")
    bundle = write_timing_bundle(stream, t, onsets, work_dir / "bundle", image_size, line, first_sample)
    log(
        f"whole path: serving and replaying at {'max' if speed is None else f'{speed:g} x'} speed"
        + (" (replayer preloaded)" if preload else "")
        + " ..."
    )
    # as fast as possible: lossless (a throughput run); at a paced speed: the plugin's high-water mark
    lossless = speed is None
    res = replay_through_daemon(
        bundle,
        rec,
        cfg,
        work_dir / "decisions.jsonl",
        speed=speed,
        replayer_process=True,
        preload=preload,
        lossless=lossless,
    )
    st = res.status
    c = st["counters"]
    last = max((d["latency_ns"]["published"] for d in res.decisions), default=None)
    first = st["capacity"]["first_block_ns"]
    span_s = (last - first) / 1e9 if last and first else None
    return {
        "channels": n_channels,
        "units": int(len(t.unit_ids)),
        "duration_s": duration_s,
        "image_size": image_size,
        "precision": precision,
        "protocol": protocol,
        "preprocess_threads": preprocess_threads,
        "speed": speed,
        "replayer_preloaded": preload,
        "onsets": int(len(onsets)),
        "decisions": len(res.decisions),
        "degraded": c["degraded"],
        "overruns": c["overruns"],
        "upstream_lost_messages": c["lost_messages"],  # message_num gaps the daemon saw
        "replayer_lossless": lossless,
        "backend": st["backend"],
        "latency_ms": st["latency"],
        "capacity": st["capacity"],
        "receiver": st["receiver"],
        "drift": drift or None,
        "motion": st.get("motion"),  # the tracker's last estimate and where the templates were moved
        "first_block_to_last_decision_s": span_s,
        "throughput_realtime_factor": duration_s / span_s if span_s else None,
        "stream_s_received": st["capacity"]["stream_s_received"],
        "stream_s_processed": st["capacity"]["stream_s"],
        # a run that ends before every onset is decided, or before all it received is processed, failed
        "failed": None
        if len(res.decisions) == len(onsets) and st["capacity"]["stream_s_received"] == st["capacity"]["stream_s"]
        else (
            f"{len(res.decisions)} decisions for {len(onsets)} onsets; {st['capacity']['stream_s']:.2f} s of "
            f"{st['capacity']['stream_s_received']:.2f} s received were processed"
        ),
    }


def run_online_bench(
    out: Path,
    channels: list[int],
    duration_s: float,
    engines: list[str],
    si_max_channels: int,
    whole_path_channels: int | None,
    whole_path_duration_s: float,
    image_size: int,
    speed: float | None,
    seed: int = 0,
    log=print,
    precision: str = "fp32",
    protocol: str = ZMQ_INTERFACE,
    preprocess_threads: int = 1,
    drift: str = "",
) -> dict:
    from rtdecode.offline.bench.offline_bench import machine

    packages = ("rtdecode", "numpy", "numba", "scipy", "spikeinterface", "onnxruntime", "pyzmq", "flatbuffers")
    result = {"machine": machine(packages), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    result["sorting"] = bench_sorting(channels, duration_s, engines, si_max_channels, seed, log, drift)
    result["drift"] = drift or None
    if whole_path_channels:
        with tempfile.TemporaryDirectory(prefix="rtdecode-bench-") as tmp:
            result["whole_path"] = bench_whole_path(
                whole_path_channels,
                whole_path_duration_s,
                image_size,
                speed,
                Path(tmp),
                seed,
                log,
                precision=precision,
                protocol=protocol,
                preprocess_threads=preprocess_threads,
                drift=drift,
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=float))
    return result
