"""The online daemon: ZMQ Interface stream -> sorting -> trials -> neural image -> backend -> decisions.

Threads:

- **receiver**: SUB to the plugin's data port; parses every message (malformed ones are counted and
  logged, never fatal), assembles blocks, checks continuity, and hands blocks, TTLs and anomalies
  to a bounded queue (a full queue drops the block, counts an overrun and marks the span degraded);
- **heartbeat**: REQ to data port + 1 every ``heartbeat_interval_s``; lazy-pirate reconnect when
  no reply arrives within ``heartbeat_timeout_s``;
- **worker**: sorts each block, tracks trials, decodes each closed trial, publishes;
- **control**: REP socket answering ``status`` and ``stop``.

Lifecycle (RTXI/Falcon style): starting -> ready (warmed up) -> running -> draining -> stopped,
or failed (e.g. the stream does not fit the bundle: the reason names both values). SIGINT/SIGTERM
and ``rtdecode stop`` drain: the queue is processed and the log closed before exit.
Latency per stage is stamped with ``time.monotonic_ns`` and reported per decision and as
percentiles in ``status``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import zmq

from rtdecode.bundle import Bundle, BundleError
from rtdecode.config import RigConfig
from rtdecode.decode import TrialDecoder
from rtdecode.publish import DecisionPublisher
from rtdecode.sorting.matcher import TemplateMatcher
from rtdecode.sorting.online import OnlineSorter
from rtdecode.sorting.preprocess import StreamingPreprocessor
from rtdecode.stream.assembler import BlockAssembler
from rtdecode.stream.protocol import DataMessage, ProtocolError, TtlMessage, parse_frames
from rtdecode.trials import TrialTracker

STAGES = ("sort", "close", "image", "inference", "publish", "total")
#: The GUI's default block period (reference/openephys.md): the latency budget of one decision.
GUI_BLOCK_MS = 23.0


class Daemon:
    def __init__(
        self,
        config: RigConfig,
        bundle_path: str | Path,
        log_path: str | Path | None = None,
        queue_blocks: int = 256,
        log=print,
    ) -> None:
        self.cfg = config
        self.log = log
        self.state = "starting"
        self.failure: str | None = None
        self.bundle = Bundle.load(bundle_path, verify=True)
        self.bundle.check_stream(config.stream.channel_count, config.stream.sample_rate, source="rig config")
        if config.trials.ttl_line != self.bundle.manifest.get("ttl_line", config.trials.ttl_line):
            log(
                f"note: rig config TTL line {config.trials.ttl_line} differs from the bundle's "
                f"{self.bundle.manifest['ttl_line']}; using the rig config's"
            )
        from rtdecode.inference.select import make_backend

        self.backend = make_backend(
            config.model.backend,
            bundle_path,
            config.model.intra_op_threads,
            config.model.precision,
            config.model.engine_cache_dir,
            log=log,
        )
        self.decoder = TrialDecoder(self.bundle, self.backend)
        m = self.bundle.manifest
        if tuple(config.trials.response_window_ms) != tuple(m["windows"]["response_ms"]) or tuple(
            config.trials.baseline_window_ms
        ) != tuple(m["windows"]["baseline_ms"]):
            raise BundleError(
                f"trial windows differ: rig config response {config.trials.response_window_ms} / "
                f"baseline {config.trials.baseline_window_ms} ms, bundle {m['windows']}"
            )
        fs = config.stream.sample_rate
        s = config.sorting
        if s.engine != "rtdecode":
            from rtdecode.sorting.spikeinterface_engine import SpikeInterfaceMatcher

            matcher = SpikeInterfaceMatcher(self.bundle, s.engine, s.detect_threshold, fs)
        else:
            matcher = TemplateMatcher(
                self.bundle.templates,
                self.bundle.nbefore,
                self.bundle.sparsity,
                self.bundle.noise_levels,
                self.bundle.channel_positions,
                threshold=s.detect_threshold,
            )
        self.sorter = OnlineSorter(
            matcher,
            StreamingPreprocessor(config.stream.channel_count, fs, s.highpass_hz, s.filter_order, s.common_reference),
        )
        self.tracker = TrialTracker(
            self.bundle.n_units, config.trials.ttl_line, self.decoder.response, self.decoder.baseline
        )
        self.assembler = BlockAssembler(config.stream.channel_count, config.stream.stream_name, fs)
        self.queue: queue.Queue = queue.Queue(maxsize=queue_blocks)
        self.ctx = zmq.Context()
        o = config.outputs
        if log_path is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            log_path = Path(o.decision_log_dir) / f"decisions-{stamp}.jsonl"
        self.log_path = Path(log_path)
        self.publisher = DecisionPublisher(f"tcp://{o.bind_host}:{o.decision_port}", self.log_path, self.ctx)
        self.network_events = None
        if o.network_events is not None:
            from rtdecode.network_events import NetworkEventsSender

            ne = o.network_events
            self.network_events = NetworkEventsSender(
                f"tcp://{ne.host}:{ne.port}", ne.ttl_line, ne.pulse_ms, context=self.ctx
            )
        self.counters = {
            "malformed": 0,
            "overruns": 0,
            "decisions": 0,
            "degraded": 0,
            "heartbeat_failures": 0,
            "queue_high_water": 0,
        }
        self.latencies = {k: [] for k in STAGES}
        self.busy_ns = 0  # worker time spent on stream items (capacity = stream time / busy time)
        self.samples_processed = 0
        self.first_block_ns: int | None = None  # monotonic arrival of the first complete block
        self.stream_start: int | None = None
        self.stream_checked = False
        self._stop = threading.Event()
        self._receiver_done = threading.Event()
        self.threads: list[threading.Thread] = []
        self.started_at = time.time()
        self.warmup_inference_ms: float | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def warmup(self) -> None:
        """First inference and first sorting pass before going live (allocation, JIT, caches)."""
        self.backend.warmup(5)
        x = np.zeros(self.backend.input_shape, dtype=np.float32)
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            self.backend.infer(x)
            times.append((time.perf_counter() - t0) * 1e3)
        self.warmup_inference_ms = float(np.median(times))
        if self.warmup_inference_ms > GUI_BLOCK_MS:
            self.log(
                f"note: inference takes {self.warmup_inference_ms:.0f} ms per trial on {self.backend.device} "
                f"({self.backend.input_shape[-1]} px input), more than one GUI block (~{GUI_BLOCK_MS:.0f} ms); "
                "decisions will lag by that much (a GPU backend or a smaller bundle image size would not)"
            )
        n = self.sorter.left + self.sorter.right + 64
        m = self.sorter.matcher
        rng = np.random.default_rng(0)
        noise = rng.normal(0, 1, (n, self.cfg.stream.channel_count)).astype(np.float32) * self.bundle.noise_levels
        m.find(noise, m.margin_left, n - m.margin_right)  # numba engines compile here, not on live data
        if hasattr(m, "warmup"):
            m.warmup()
        pre = self.sorter.pre
        StreamingPreprocessor(pre.n_channels, pre.sample_rate, pre.highpass_hz, pre.order, pre.reference).process(noise)

    def start(self) -> None:
        self.publisher.log_event(
            {
                "event": "start",
                "time": time.time(),
                "bundle": str(self.bundle.path),
                "bundle_files": self.bundle.manifest["files"],
                "backend": self.backend.device,
                "config": self.cfg.model_dump(mode="json"),
            }
        )
        self.warmup()
        self.publisher.log_event({"event": "warmup", "inference_ms_median": self.warmup_inference_ms})
        self.state = "ready"
        for target, name in (
            (self._receive, "receiver"),
            (self._work, "worker"),
            (self._heartbeat, "heartbeat"),
            (self._control, "control"),
        ):
            t = threading.Thread(target=target, name=f"rtdecode-{name}", daemon=True)
            t.start()
            self.threads.append(t)
        self.log(
            f"rtdecode serving: {self.cfg.stream.host}:{self.cfg.stream.data_port} -> decisions on "
            f"{self.publisher.address}, log {self.log_path}, backend {self.backend.device}"
        )

    def stop(self) -> None:
        if self.state not in ("stopped", "failed"):
            self.state = "draining"
        self._stop.set()

    def fail(self, reason: str) -> None:
        self.failure = reason
        self.state = "failed"
        self.log(f"error: {reason}")
        self._stop.set()

    def wait(self, timeout: float | None = None) -> None:
        """Block until stopped; then drain and close everything."""
        self._stop.wait(timeout)
        for t in self.threads:
            t.join(10)
        if self.state != "failed":
            self.state = "stopped"
        self.publisher.log_event(
            {
                "event": "stop",
                "time": time.time(),
                "state": self.state,
                "failure": self.failure,
                "status": self.status(),
            }
        )
        self.publisher.close()
        if self.network_events is not None:
            self.network_events.close()
        self.ctx.term()

    # -- receiver --------------------------------------------------------------------------------
    def _receive(self) -> None:
        s = self.cfg.stream
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.LINGER, 0)
        sub.connect(f"tcp://{s.host}:{s.data_port}")
        first_block_sample: int | None = None
        seen_channels: set[int] = set()
        try:
            while not self._stop.is_set():
                if not sub.poll(100):
                    continue
                frames = sub.recv_multipart()
                now = time.monotonic_ns()
                try:
                    msg = parse_frames(frames)
                except ProtocolError as err:
                    self.counters["malformed"] += 1
                    if self.counters["malformed"] <= 20:
                        self.log(f"warning: malformed message ignored: {err}")
                    continue
                if isinstance(msg, DataMessage) and not self.stream_checked:
                    if abs(msg.sample_rate - s.sample_rate) > 1e-6 or abs(msg.sample_rate - self.decoder.fs) > 1e-6:
                        self.fail(
                            f"stream sample rate {msg.sample_rate} Hz does not fit the bundle "
                            f"({self.decoder.fs} Hz) / rig config ({s.sample_rate} Hz)"
                        )
                        return
                    if first_block_sample is None:
                        first_block_sample = msg.sample_num
                    if msg.sample_num == first_block_sample:
                        seen_channels.add(msg.channel_num)
                        if max(seen_channels) >= s.channel_count:
                            self.fail(
                                f"stream has more than {s.channel_count} channels (channel_num "
                                f"{max(seen_channels)}); the bundle expects {self.bundle.manifest['channel_count']}"
                            )
                            return
                    elif seen_channels:
                        n = max(seen_channels) + 1
                        if n != s.channel_count:
                            self.fail(
                                f"stream has {n} channels, the bundle expects "
                                f"{self.bundle.manifest['channel_count']} (rig config {s.channel_count})"
                            )
                            return
                        self.stream_checked = True
                if isinstance(msg, TtlMessage):
                    anomalies = self.assembler.on_ttl(msg)
                    self._put(("anomalies", anomalies, now))
                    self._put(("ttl", msg, now))
                elif isinstance(msg, DataMessage):
                    block, anomalies = self.assembler.on_data(msg, now)
                    if anomalies:
                        self._put(("anomalies", anomalies, now))
                    if block is not None:
                        if self.first_block_ns is None:
                            self.first_block_ns = now
                        self._put(("block", (block.sample_num, block.data.copy()), now))
        finally:
            sub.close()
            self._receiver_done.set()

    def _put(self, item) -> None:
        if item[0] == "anomalies" and not item[1]:
            return
        if item[0] != "block":
            # TTLs and anomalies are tiny and rare, and losing one would lose a trial or hide a gap:
            # wait for room rather than drop them.
            while not self._stop.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            return
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.counters["overruns"] += 1
            first, data = item[1]
            # The worker cannot see this block: mark its span so overlapping trials are degraded.
            while not self._stop.is_set():
                try:
                    self.queue.put(("lost", (first, first + len(data)), item[2]), timeout=0.1)
                    break
                except queue.Full:
                    continue
        self.counters["queue_high_water"] = max(self.counters["queue_high_water"], self.queue.qsize())

    # -- worker ----------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            try:
                kind, payload, t_arrival = self.queue.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set() and (self._receiver_done.is_set() or self.state == "failed"):
                    return
                continue
            t0 = time.monotonic_ns()
            try:
                self._handle(kind, payload, t_arrival)
            except Exception as err:  # never die on one bad item: count, log, go on
                self.counters["malformed"] += 1
                self.log(f"warning: could not process {kind}: {type(err).__name__}: {err}")
            self.busy_ns += time.monotonic_ns() - t0
            if kind == "block":
                self.samples_processed += len(payload[1])

    def _handle(self, kind: str, payload, t_arrival: int) -> None:
        if kind == "ttl":
            self.tracker.on_ttl(payload.line, payload.state, payload.sample_num)
            return
        if kind == "anomalies":
            for a in payload:
                if a.kind == "restart":
                    self.sorter.reset()
                    self.stream_start = None
                    for trial in self.tracker.on_restart():
                        self._emit(trial, t_arrival, t_arrival)
                elif a.kind != "duplicate":
                    self.tracker.on_anomaly(a.start_sample, a.end_sample, a.kind.replace("_", " "))
            return
        if kind == "lost":
            self.tracker.on_anomaly(payload[0], payload[1], "queue overrun")
            return
        first, data = payload
        if self.state == "ready":
            self.state = "running"
        if self.stream_start is None or (
            self.sorter.buf_start is not None and first != self.sorter.buf_start + self.sorter.n
        ):
            if self.stream_start is None:
                self.stream_start = first
            else:  # a gap: the sorter restarts; its left margin is unsorted
                self.tracker.on_anomaly(self.sorter.buf_start + self.sorter.n, first + self.sorter.left, "data gap")
        spikes, units = self.sorter.process(data, first)
        t_sorted = time.monotonic_ns()
        self.tracker.add_spikes(spikes, units)
        for trial in self.tracker.close_ready(self.sorter.sorted_until, self.stream_start):
            self._emit(trial, t_arrival, t_sorted)

    def _emit(self, trial, t_arrival: int, t_sorted: int) -> None:
        t_closed = time.monotonic_ns()
        result = self.decoder.decide(trial)
        fs = self.decoder.fs
        r0, r1 = self.decoder.response
        decision = {
            "onset_sample": trial.onset_sample,
            "window_samples": [trial.onset_sample + r0, trial.onset_sample + r1],
            "window_ms": list(self.cfg.trials.response_window_ms),
            "predicted_class": result["predicted_class"],
            "probabilities": result["probabilities"],
            "n_spikes": trial.n_spikes,
            "n_units": trial.n_units_active,
            "status": result["status"],
            "latency_ns": {
                "block_arrival": t_arrival,
                "sorted": t_sorted,
                "trial_closed": t_closed,
                "image": result["t_image_ns"],
                "inference": result["t_inference_ns"],
            },
            "sample_rate": fs,
        }
        d = self.publisher.publish(decision)
        if self.network_events is not None and result["status"] == "ok":
            self.network_events.pulse()  # queued; sent on its own thread
        lat = d["latency_ns"]
        self.counters["decisions"] += 1
        if result["status"] != "ok":
            self.counters["degraded"] += 1
            return
        ms = lambda a, b: (lat[b] - lat[a]) / 1e6  # noqa: E731
        for stage, (a, b) in {
            "sort": ("block_arrival", "sorted"),
            "close": ("sorted", "trial_closed"),
            "image": ("trial_closed", "image"),
            "inference": ("image", "inference"),
            "publish": ("inference", "published"),
            "total": ("block_arrival", "published"),
        }.items():
            self.latencies[stage].append(ms(a, b))

    # -- heartbeat ---------------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        s = self.cfg.stream
        msg = json.dumps({"application": "rtdecode", "uuid": str(uuid.uuid4()), "type": "heartbeat"}).encode()
        sock = None
        while not self._stop.is_set():
            if sock is None:
                sock = self.ctx.socket(zmq.REQ)
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(f"tcp://{s.host}:{s.heartbeat_port}")
            sock.send(msg)
            deadline = time.monotonic() + s.heartbeat_timeout_s
            answered = False
            while not self._stop.is_set() and time.monotonic() < deadline:
                if sock.poll(100):
                    sock.recv()
                    answered = True
                    break
            if not answered:
                if self._stop.is_set():
                    break
                self.counters["heartbeat_failures"] += 1
                sock.close()  # lazy pirate: a REQ socket without a reply cannot send again
                sock = None
                continue
            self._stop.wait(s.heartbeat_interval_s)
        if sock is not None:
            sock.close()

    # -- control ------------------------------------------------------------------------------------
    def _control(self) -> None:
        o = self.cfg.outputs
        rep = self.ctx.socket(zmq.REP)
        rep.setsockopt(zmq.LINGER, 0)
        try:
            rep.bind(f"tcp://{o.bind_host}:{o.control_port}")
        except zmq.ZMQError as err:
            rep.close()
            self.fail(f"cannot bind the control socket {o.bind_host}:{o.control_port}: {err}")
            return
        try:
            while not self._stop.is_set():
                if not rep.poll(100):
                    continue
                try:
                    cmd = json.loads(rep.recv()).get("cmd")
                except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
                    rep.send_json({"error": 'expected JSON {"cmd": "status"|"stop"}'})
                    continue
                if cmd == "status":
                    rep.send_json(self.status())
                elif cmd == "stop":
                    rep.send_json({"ok": True, "state": "draining"})
                    self.stop()
                else:
                    rep.send_json({"error": f"unknown command {cmd!r}; expected status or stop"})
        finally:
            rep.close()

    def status(self) -> dict:
        pct = {}
        for stage, values in self.latencies.items():
            if values:
                v = np.asarray(values[-10000:])
                pct[stage] = {
                    "p50_ms": float(np.percentile(v, 50)),
                    "p99_ms": float(np.percentile(v, 99)),
                    "n": len(values),
                }
        return {
            "state": self.state,
            "failure": self.failure,
            "bundle": str(self.bundle.path),
            "backend": self.backend.device,
            "uptime_s": time.time() - self.started_at,
            "warmup_inference_ms": self.warmup_inference_ms,
            "counters": {
                **self.assembler.counters,
                **self.tracker.counters,
                **self.counters,
                "spikes": self.sorter.counters["spikes"],
            },
            "latency": pct,
            "capacity": {
                "stream_s": self.samples_processed / self.cfg.stream.sample_rate,
                "worker_busy_s": self.busy_ns / 1e9,
                "first_block_ns": self.first_block_ns,
                "realtime_factor": (self.samples_processed / self.cfg.stream.sample_rate) / (self.busy_ns / 1e9)
                if self.busy_ns
                else None,
            },
            "decision_log": str(self.log_path),
        }
