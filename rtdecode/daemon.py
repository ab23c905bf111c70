"""The online daemon: ZMQ Interface stream -> sorting -> trials -> neural image -> backend -> decisions.

Threads:

- **receiver**: SUB to the plugin's data port; parses every message (malformed ones are counted and
  logged, never fatal), assembles blocks, checks continuity, and hands blocks, TTLs and anomalies
  to a bounded queue (a full queue drops the block, counts an overrun and marks the span degraded);
- **heartbeat**: REQ to data port + 1 every ``heartbeat_interval_s``; lazy-pirate reconnect when
  no reply arrives within ``heartbeat_timeout_s``;
- **worker**: feeds typed items (``rtdecode.worker_items``) to the one
  :class:`~rtdecode.pipeline.OnlinePipeline` (sorting, trials, decoding) and publishes its decisions;
  an exception of our own there is logged with its traceback and counted as an internal error;
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
import traceback
import uuid
from pathlib import Path

import numpy as np
import zmq

from rtdecode.config import RigConfig
from rtdecode.parameters import default
from rtdecode.pipeline import LATENCY_STAGES, Decision, OnlinePipeline
from rtdecode.publish import DecisionPublisher
from rtdecode.stream.assembler import BlockAssembler
from rtdecode.stream.protocol import DataMessage, ProtocolError, TtlMessage, parse_frames
from rtdecode.worker_items import AnomaliesItem, BlockItem, LostItem, TtlItem, WorkerItem

STAGES = tuple(LATENCY_STAGES)
#: The GUI's default block period (reference/openephys.md): the latency budget of one decision.
GUI_BLOCK_MS = default("gui.block_ms")


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
        self.pipeline = OnlinePipeline.open(bundle_path, config, log=log)
        self.bundle = self.pipeline.bundle
        self.backend = self.pipeline.backend
        fs = config.stream.sample_rate
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
            "internal_errors": 0,
            "overruns": 0,
            "decisions": 0,
            "degraded": 0,
            "heartbeat_failures": 0,
            "queue_high_water": 0,
        }
        self.latencies = {k: [] for k in STAGES}
        self.busy_ns = 0  # worker time spent on stream items (capacity = stream time / busy time)
        self.first_block_ns: int | None = None  # monotonic arrival of the first complete block
        self.stream_checked = False
        self._stop = threading.Event()
        self._receiver_done = threading.Event()
        self.threads: list[threading.Thread] = []
        self.started_at = time.time()
        self.warmup_inference_ms: float | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def warmup(self) -> None:
        """First inference and first sorting pass before going live (allocation, JIT, caches)."""
        self.warmup_inference_ms = self.pipeline.warmup()
        if self.warmup_inference_ms > GUI_BLOCK_MS:
            self.log(
                f"note: inference takes {self.warmup_inference_ms:.0f} ms per trial on {self.backend.device} "
                f"({self.backend.input_shape[-1]} px input), more than one GUI block (~{GUI_BLOCK_MS:.0f} ms); "
                "decisions will lag by that much (a GPU backend or a smaller bundle image size would not)"
            )

    def start(self) -> None:
        self.publisher.log_event(
            {
                "event": "start",
                "time": time.time(),
                "bundle": str(self.bundle.path),
                "bundle_files": self.bundle.manifest.files,
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
        for decision in self.pipeline.finish("shutdown"):  # every onset gets its one decision
            self._publish(decision)
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
                    if (
                        abs(msg.sample_rate - s.sample_rate) > 1e-6
                        or abs(msg.sample_rate - self.pipeline.sample_rate) > 1e-6
                    ):
                        self.fail(
                            f"stream sample rate {msg.sample_rate} Hz does not fit the bundle "
                            f"({self.pipeline.sample_rate} Hz) / rig config ({s.sample_rate} Hz)"
                        )
                        return
                    if first_block_sample is None:
                        first_block_sample = msg.sample_num
                    if msg.sample_num == first_block_sample:
                        seen_channels.add(msg.channel_num)
                        if max(seen_channels) >= s.channel_count:
                            self.fail(
                                f"stream has more than {s.channel_count} channels (channel_num "
                                f"{max(seen_channels)}); the bundle expects {self.bundle.manifest.channel_count}"
                            )
                            return
                    elif seen_channels:
                        n = max(seen_channels) + 1
                        if n != s.channel_count:
                            self.fail(
                                f"stream has {n} channels, the bundle expects "
                                f"{self.bundle.manifest.channel_count} (rig config {s.channel_count})"
                            )
                            return
                        self.stream_checked = True
                if isinstance(msg, TtlMessage):
                    anomalies = self.assembler.on_ttl(msg)
                    if anomalies:
                        self._put(AnomaliesItem(anomalies, now))
                    self._put(TtlItem(msg.line, msg.state, msg.sample_num, now))
                elif isinstance(msg, DataMessage):
                    block, anomalies = self.assembler.on_data(msg, now)
                    if anomalies:
                        self._put(AnomaliesItem(anomalies, now))
                    if block is not None:
                        if self.first_block_ns is None:
                            self.first_block_ns = now
                        self._put(BlockItem(block.sample_num, block.data.copy(), now))
        finally:
            sub.close()
            self._receiver_done.set()

    def _put(self, item: WorkerItem) -> None:
        if not isinstance(item, BlockItem):
            # TTLs and anomalies are tiny and rare, and losing one would lose a trial or hide a gap:
            # wait for room rather than drop them.
            self._put_waiting(item)
            return
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.counters["overruns"] += 1
            # The worker cannot see this block: mark its span so overlapping trials are degraded.
            self._put_waiting(LostItem(item.first_sample, item.first_sample + len(item.data), item.arrival_ns))
        self.counters["queue_high_water"] = max(self.counters["queue_high_water"], self.queue.qsize())

    def _put_waiting(self, item: WorkerItem) -> None:
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    # -- worker ----------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            try:
                item = self.queue.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set() and (self._receiver_done.is_set() or self.state == "failed"):
                    return
                continue
            t0 = time.monotonic_ns()
            try:
                for decision in self._handle(item):
                    self._publish(decision)
            except Exception as err:  # a bug of ours, not bad input: count it, keep the traceback, go on
                self.counters["internal_errors"] += 1
                self.log(
                    f"error: internal error while processing {type(item).__name__} ({type(err).__name__}: {err}):\n"
                    + traceback.format_exc()
                )
            self.busy_ns += time.monotonic_ns() - t0

    def _handle(self, item: WorkerItem) -> list[Decision]:
        p = self.pipeline
        if isinstance(item, TtlItem):
            p.on_ttl(item.line, item.state, item.sample)
            return []
        if isinstance(item, LostItem):
            p.on_lost(item.start, item.end, item.reason)
            return []
        if isinstance(item, AnomaliesItem):
            out: list[Decision] = []
            for a in item.anomalies:
                if a.kind == "restart":
                    out += p.on_restart(item.arrival_ns)
                elif a.kind != "duplicate":
                    p.on_lost(a.start_sample, a.end_sample, a.kind.replace("_", " "))
            return out
        if self.state == "ready":
            self.state = "running"
        return p.on_block(item.first_sample, item.data, item.arrival_ns)

    def _publish(self, decision: Decision) -> None:
        d = self.publisher.publish(decision.record())
        if self.network_events is not None and decision.ok:
            self.network_events.pulse()  # queued; sent on its own thread
        self.counters["decisions"] += 1
        if not decision.ok:
            self.counters["degraded"] += 1
            return
        lat = d["latency_ns"]
        for stage, (a, b) in LATENCY_STAGES.items():
            self.latencies[stage].append((lat[b] - lat[a]) / 1e6)

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
        stream_s = self.pipeline.samples_processed / self.cfg.stream.sample_rate
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
                **self.pipeline.counters(),
                **self.counters,
            },
            "latency": pct,
            "capacity": {
                "stream_s": stream_s,
                "worker_busy_s": self.busy_ns / 1e9,
                "first_block_ns": self.first_block_ns,
                "realtime_factor": stream_s / (self.busy_ns / 1e9) if self.busy_ns else None,
            },
            "decision_log": str(self.log_path),
        }
