"""The one online pipeline: preprocessor -> matcher -> online sorter -> trial tracker -> decoder.

:class:`OnlinePipeline` is made by one constructor from a decoder bundle and a rig config. It
checks their whole contract once -- channel count, sample rate, trial windows, the preprocessing
the templates were made on, the TTL line, the unit count, the sorting engine and the backend's
input -- and refuses a mismatch with a message that names both values. Then it is fed what a
stream delivers (blocks, TTLs, lost spans, restarts, the end) and returns :class:`Decision`\\ s.

The daemon (``rtdecode serve``), the offline decoder (``rtdecode decode``) and the benchmarks all
drive this object; nothing else wires those parts together. :func:`make_online_sorter` is the one
place a sorter is assembled from templates (the sorting benchmark uses it without a bundle).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rtdecode.bundle import Bundle, BundleError
from rtdecode.config import RigConfig, SortingConfig, parse_rig_config
from rtdecode.degraded import Degraded, status_of
from rtdecode.gaps import GapLedger
from rtdecode.inference.base import Backend
from rtdecode.inference.select import make_backend
from rtdecode.manifest import Preprocessing
from rtdecode.sorting.matcher import TemplateMatcher
from rtdecode.sorting.motion import MotionTracker
from rtdecode.sorting.moving_templates import MovingTemplates
from rtdecode.sorting.online import OnlineSorter
from rtdecode.sorting.preprocess import StreamingPreprocessor
from rtdecode.sorting.spikeinterface_engine import SpikeInterfaceMatcher
from rtdecode.trial_decoder import TrialDecoder, Verdict
from rtdecode.trials import ClosedTrial, TrialTracker

#: Stages of a decision's latency: (from, to) timestamps of its ``latency_ns``.
LATENCY_STAGES = {
    "sort": ("block_arrival", "sorted"),
    "close": ("sorted", "trial_closed"),
    "image": ("trial_closed", "image"),
    "inference": ("image", "inference"),
    "publish": ("inference", "published"),
    "total": ("block_arrival", "published"),
}


class ContractError(BundleError):
    """A bundle and a rig config that do not fit each other; the message names both values."""


@dataclass(slots=True)
class Decision:
    """One trial's decision, in the decision log's field order (``seq`` and ``published`` are added
    by whoever publishes or writes it)."""

    onset_sample: int
    window_samples: list[int]
    window_ms: list[float]
    predicted_class: str | None
    probabilities: dict[str, float] | None
    n_spikes: int
    n_units: int
    status: str
    latency_ns: dict[str, int | None]
    sample_rate: float
    #: Where the onset sits in the stream, for aligning with a stimulus log of another sample origin:
    #: the acquisition segment (1, 2, ...: a new one at every restart, stop/start or playback loop),
    #: the segment's first sample number, and the onset's index among the segment's onsets (0-based).
    segment: int = 1
    segment_first_sample: int | None = None
    onset_index: int | None = None
    #: Why the trial is degraded, one entry per cause (``status`` joins them); empty when ok.
    reasons: list[Degraded] = field(default_factory=list)
    #: The probe's estimated displacement along the shank from its calibration position when the
    #: trial was decided (um, + = units further from the tip); None when not tracked (yet).
    motion_um: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def record(self) -> dict:
        return asdict(self)


def contract_problems(bundle: Bundle, cfg: RigConfig) -> list[str]:
    """Every way ``bundle`` and ``cfg`` disagree, each naming the bundle's and the config's value.
    (The preprocessing and the trial windows are the bundle's alone: the rig config has none.)"""
    m = bundle.manifest
    s, t = cfg.stream, cfg.trials
    pairs = [
        ("channel count", m.channel_count, s.channel_count, m.channel_count == s.channel_count),
        ("sample rate (Hz)", m.sample_rate, s.sample_rate, abs(m.sample_rate - s.sample_rate) <= 1e-6),
        ("TTL line of onsets", m.ttl_line, t.ttl_line, m.ttl_line == t.ttl_line),
    ]
    problems = [f"{name}: bundle {a}, rig config {b}" for name, a, b, same in pairs if not same]
    if m.normalisation.image_size != m.image_size:
        problems.append(f"image size: bundle {m.image_size}, its normalisation {m.normalisation.image_size}")
    return problems


def rig_config_for_bundle(bundle: Bundle) -> RigConfig:
    """A loopback rig config that fits ``bundle`` by construction (its stream facts and TTL line;
    every other value from the parameter table) -- for decoding a
    recording offline when no rig config is given. Its sockets are never bound offline."""
    m = bundle.manifest
    return parse_rig_config(
        {
            "name": f"offline ({m.target})",
            "stream": {
                "data_port": 5556,
                "heartbeat_port": 5557,
                "stream_name": m.stream_name or "ProbeA-AP",
                "channel_count": m.channel_count,
                "sample_rate": m.sample_rate,
            },
            "trials": {"ttl_line": m.ttl_line},
            "outputs": {"decision_port": 5560, "control_port": 5561},
        },
        source=f"{bundle.path} (offline defaults)",
    )


def make_matcher(templates, sorting: SortingConfig, sample_rate: float):
    """The configured engine over ``templates`` (a :class:`Bundle` or anything with its template
    fields: templates, nbefore, sparsity, noise_levels, channel_positions, unit_ids)."""
    if sorting.engine == "rtdecode":
        return TemplateMatcher(
            templates.templates,
            templates.nbefore,
            templates.sparsity,
            templates.noise_levels,
            templates.channel_positions,
            threshold=sorting.detect_threshold,
            detection=sorting.detection,
        )
    return SpikeInterfaceMatcher(templates, sorting.engine, sorting.detect_threshold, sample_rate)


def make_online_sorter(
    templates, n_channels: int, sample_rate: float, sorting: SortingConfig, preprocessing: Preprocessing
) -> OnlineSorter:
    """Causal ``preprocessing`` (the bundle's; carried state) + the configured matcher, fed block by block."""
    p = preprocessing
    pre = StreamingPreprocessor(
        n_channels, sample_rate, p.highpass_hz, p.order, p.reference, sorting.preprocess_threads
    )
    matcher = make_matcher(templates, sorting, sample_rate)
    tracker = None
    if sorting.motion_tracking and isinstance(matcher, TemplateMatcher):  # it tracks from the matcher's peaks
        profile = getattr(templates, "depth_profile", None)
        if profile is not None:  # the calibration recording's own peaks (the builder records them)
            tracker = MotionTracker.for_calibration(
                profile, templates.channel_positions, matcher.neighbours, sample_rate
            )  # fmt: skip
        else:  # predicted from the templates, every unit counted once: the bundle's baseline rates (from
            # the calibration's online sort, baseline windows only) correlated 0.11 with the true rates
            # on the demo animal, and weighting by them led the tracker astray
            tracker = MotionTracker.for_templates(
                templates.templates, templates.channel_positions, matcher.neighbours, None, sample_rate
            )
    moving = MovingTemplates(matcher, sample_rate) if tracker is not None else None
    return OnlineSorter(matcher, pre, motion=tracker, moving=moving)


class OnlinePipeline:
    def __init__(self, bundle: Bundle, cfg: RigConfig, backend: Backend | None = None, log=print) -> None:
        problems = contract_problems(bundle, cfg)
        if problems:
            raise ContractError(f"{bundle.path} does not fit the rig config {cfg.name!r}: " + "; ".join(problems))
        self.bundle = bundle
        self.cfg = cfg
        self.log = log
        m = bundle.manifest
        self.backend = backend or make_backend(
            cfg.model.backend,
            bundle,
            cfg.model.intra_op_threads,
            cfg.model.precision,
            cfg.model.engine_cache_dir,
            log=log,
        )
        want = (1, 3, m.image_size, m.image_size)
        if tuple(self.backend.input_shape) != want:
            raise ContractError(
                f"{bundle.path}: backend {self.backend.name} takes input {tuple(self.backend.input_shape)}, "
                f"the bundle's image size {m.image_size} needs {want}"
            )
        self.decoder = TrialDecoder(bundle, self.backend, cfg.trials.running_baseline)
        self.sample_rate = m.sample_rate
        self.sorter = make_online_sorter(bundle, m.channel_count, m.sample_rate, cfg.sorting, m.preprocessing)
        self.tracker = TrialTracker(bundle.n_units, cfg.trials.ttl_line, self.decoder.response, self.decoder.baseline)
        self.window_ms = list(m.windows.response_ms)
        self.stream_start: int | None = None  # first sample of the current acquisition
        self.samples_processed = 0
        self.decode_errors = 0
        self.segment = 1
        self._onset_index: dict[int, tuple[int, int | None, int]] = {}  # onset -> (segment, first sample, index)
        self._onsets_in_segment = 0
        self.gaps = GapLedger(m.sample_rate)
        self._next_gap_cause = Degraded.DATA_GAP

    @classmethod
    def open(cls, bundle_path: str | Path, cfg: RigConfig, backend: Backend | None = None, log=print) -> OnlinePipeline:
        """Load and verify the bundle (every hash, the manifest's own content included), then build."""
        return cls(Bundle.load(bundle_path, verify=True), cfg, backend, log)

    # -- before going live --------------------------------------------------------------------------
    def warmup(self, calls: int = 10) -> float:
        """Compile and allocate before live data: backend (median of ``calls`` timed inferences, in ms,
        returned), matcher kernels, preprocessing kernel."""
        self.backend.warmup(5)
        x = np.zeros(self.backend.input_shape, dtype=np.float32)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            self.backend.infer(x)
            times.append((time.perf_counter() - t0) * 1e3)
        n = self.sorter.left + self.sorter.right + 64
        matcher = self.sorter.matcher
        rng = np.random.default_rng(0)
        noise = rng.normal(0, 1, (n, self.bundle.manifest.channel_count)).astype(np.float32)
        noise *= self.bundle.noise_levels
        matcher.find(noise, matcher.margin_left, n - matcher.margin_right)  # numba engines compile here
        if hasattr(matcher, "warmup"):
            matcher.warmup()
        pre = self.sorter.pre
        StreamingPreprocessor(pre.n_channels, pre.sample_rate, pre.highpass_hz, pre.order, pre.reference).process(noise)
        return float(np.median(times))

    # -- feeding --------------------------------------------------------------------------------------
    def on_ttl(self, line: int, state: int, sample: int) -> None:
        """A TTL event (0-based line, as on the wire); a rising edge on the onset line opens a trial."""
        if line == self.tracker.ttl_line and state:
            self._onset_index[int(sample)] = (self.segment, self.stream_start, self._onsets_in_segment)
            self._onsets_in_segment += 1
        self.tracker.on_ttl(line, state, sample)

    def on_lost(self, start: int, end: int, reason: Degraded, data_end_unknown: bool = False) -> None:
        """Samples ``[start, end)`` were not seen whole (lost messages, a gap, an overrun): trials
        overlapping them are decided degraded for ``reason``; the span is counted in :attr:`gaps`
        (``data_end_unknown``: the samples lost end where the next block starts, see :class:`Anomaly`)."""
        self.tracker.on_anomaly(start, end, reason)
        if data_end_unknown:
            self.gaps.open(start, end, reason)
        else:
            self.gaps.add(start, end, reason)

    def expect_gap(self, cause: Degraded) -> None:
        """The next jump in sample numbers has a known cause (e.g. the receiver process was replaced)."""
        self._next_gap_cause = cause

    def on_restart(self, arrival_ns: int, reason: Degraded = Degraded.RESTART) -> list[Decision]:
        """Acquisition restarted (sample numbers start again): pending trials belong to the finished
        run and are decided degraded; the sorter starts afresh."""
        self.sorter.reset()
        self.stream_start = None
        out = [self._decide(t, arrival_ns, arrival_ns) for t in self.tracker.on_restart(reason)]
        self.segment += 1
        self.gaps.new_segment(self.segment)
        self._onsets_in_segment = 0
        self._onset_index.clear()
        return out

    def on_block(self, first_sample: int, data: np.ndarray, arrival_ns: int) -> list[Decision]:
        """One block (samples x channels, uV) starting at ``first_sample``; the decisions it closes."""
        sorter = self.sorter
        self.gaps.settle(first_sample)  # lost messages before this block: their samples end here
        if self.stream_start is None:
            self.stream_start = first_sample
            for onset, (seg, _, k) in list(self._onset_index.items()):  # TTLs come before their block's data
                self._onset_index[onset] = (seg, first_sample, k)
        elif (unsorted := sorter.unsorted_by(first_sample)) is not None:
            # a jump: the sorter restarts, and its left margin after it is unsorted
            expected, cause = unsorted[0], self._next_gap_cause
            if self.gaps.add(expected, first_sample, cause) is None and self.gaps.covering_cause:
                cause = self.gaps.covering_cause  # the receiver already named this hole: one reason, not two
            self.tracker.on_anomaly(expected, unsorted[1], cause)
        self._next_gap_cause = Degraded.DATA_GAP
        spikes, units = sorter.process(data, first_sample)
        t_sorted = time.monotonic_ns()
        self.samples_processed += len(data)
        self.tracker.add_spikes(spikes, units)
        closed = self.tracker.close_ready(sorter.sorted_until, self.stream_start)
        return [self._decide(t, arrival_ns, t_sorted) for t in closed]

    def finish(self, reason: Degraded, arrival_ns: int | None = None) -> list[Decision]:
        """The stream ended (or the daemon stops): every trial still open is decided degraded."""
        t = time.monotonic_ns() if arrival_ns is None else arrival_ns
        return [self._decide(trial, t, t) for trial in self.tracker.close_all(reason)]

    @property
    def motion_um(self) -> float | None:
        tracker = self.sorter.motion
        d = None if tracker is None else tracker.displacement_um
        return None if d is None else round(d, 2)

    def motion_status(self) -> dict:
        """The motion estimate for ``status``: off, or the tracker's state and where the templates in
        use are moved to."""
        tracker = self.sorter.motion
        if tracker is None:
            engine = self.cfg.sorting.engine
            why = "off ([sorting] motion_tracking = false)" if not self.cfg.sorting.motion_tracking else None
            return {"tracking": why or f"not available with the {engine} engine (rtdecode's matcher only)"}
        moving = self.sorter.moving
        return {"tracking": "on", **tracker.status(), "templates": None if moving is None else moving.status()}

    @property
    def pending_onsets(self) -> int:
        return len(self.tracker.pending)

    def counters(self) -> dict:
        return {**self.tracker.counters, "spikes": self.sorter.counters["spikes"], "decode_errors": self.decode_errors}

    @property
    def image_scale(self) -> dict:
        """The scale of the neural images decoded so far against the bundle's training images."""
        return self.decoder.image_scale

    @property
    def baseline_status(self) -> dict:
        """The units' baseline rates against the calibration's (``[trials] running_baseline``)."""
        return self.decoder.baseline_status

    def _decide(self, trial: ClosedTrial, arrival_ns: int, sorted_ns: int) -> Decision:
        t_closed = time.monotonic_ns()
        try:
            v = self.decoder.decide(trial)
        except Exception as err:  # a backend or a bug of ours failed: the onset still gets its decision
            self.decode_errors += 1
            self.log(f"error: decoding the trial at {trial.onset_sample} failed:\n" + traceback.format_exc())
            why = (Degraded.INTERNAL_ERROR,)
            v = Verdict(status_of(why, f"{type(err).__name__}: {err}"[:270]), None, None, None, None, why)
        r0, r1 = self.decoder.response
        segment, first, index = self._onset_index.pop(trial.onset_sample, (self.segment, self.stream_start, None))
        return Decision(
            onset_sample=trial.onset_sample,
            window_samples=[trial.onset_sample + r0, trial.onset_sample + r1],
            window_ms=self.window_ms,
            predicted_class=v.predicted_class,
            probabilities=v.probabilities,
            n_spikes=trial.n_spikes,
            n_units=trial.n_units_active,
            status=v.status,
            latency_ns={
                "block_arrival": arrival_ns,
                "sorted": sorted_ns,
                "trial_closed": t_closed,
                "image": v.t_image_ns,
                "inference": v.t_inference_ns,
            },
            sample_rate=self.sample_rate,
            segment=segment,
            segment_first_sample=first,
            onset_index=index,
            reasons=list(v.reasons),
            motion_um=self.motion_um,
        )
