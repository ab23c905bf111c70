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
from rtdecode.control import MAX_REQUEST_BYTES, parse_request
from rtdecode.curve import load_keys, make_server, start_authenticator
from rtdecode.parameters import default
from rtdecode.pipeline import LATENCY_STAGES, Decision, OnlinePipeline
from rtdecode.publish import DecisionPublisher
from rtdecode.stream.assembler import BlockAssembler
from rtdecode.stream.fit import StreamFit
from rtdecode.stream.gate import StrayGate
from rtdecode.stream.protocol import DataMessage, ProtocolError, TtlMessage, parse_frames
from rtdecode.worker_items import AnomaliesItem, BlockItem, LostItem, TtlItem, WorkerItem

STAGES = tuple(LATENCY_STAGES)
#: Anomalies that lose no data of the stream: a repeated message, or a message that was not ours
#: (another stream, rate or channel range) -- counted and dropped, trials stay whole.
MAX_DATA_MESSAGE_BYTES = 64 << 20
NOT_LOSSES = ("duplicate", "wrong_stream", "wrong_sample_rate", "wrong_channel_count", "oversized")
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
        self.assembler = BlockAssembler(
            config.stream.channel_count, config.stream.stream_name, fs, channel_numbers=config.stream.channel_numbers
        )
        self.gate = StrayGate(self.assembler)
        self.queue: queue.Queue = queue.Queue(maxsize=queue_blocks)
        self.ctx = zmq.Context()
        o = config.outputs
        if log_path is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            log_path = Path(o.decision_log_dir) / f"decisions-{stamp}.jsonl"
        self.log_path = Path(log_path)
        self.run_id = uuid.uuid4().hex[:16]
        self.curve_keys = load_keys(o.curve_server_key) if o.curve else None
        self.authenticator = start_authenticator(self.ctx, o.curve_authorized_clients) if o.curve else None
        self.publisher = DecisionPublisher(
            f"tcp://{o.bind_host}:{o.decision_port}",
            self.log_path,
            self.ctx,
            run_id=self.run_id,
            curve_server=self.curve_keys,
        )
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
            "bad_control_requests": 0,
            "queue_high_water": 0,
        }
        self.latencies = {k: [] for k in STAGES}
        self.samples_received = 0  # samples of every assembled block (processed or lost to an overrun)
        self.busy_ns = 0  # worker time spent on stream items (capacity = stream time / busy time)
        self.first_block_ns: int | None = None  # monotonic arrival of the first complete block
        self.fit = StreamFit(config.stream.channel_count, config.stream.sample_rate)
        self._stop = threading.Event()
        self._receiver_done = threading.Event()
        self.threads: list[threading.Thread] = []
        self._worker: threading.Thread | None = None  # set at start
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
                "run_id": self.run_id,
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
            if name == "worker":
                self._worker = t
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
                "run_id": self.run_id,
                "time": time.time(),
                "state": self.state,
                "failure": self.failure,
                "onsets": {
                    "seen": self.pipeline.counters()["onsets"],
                    "decided": self.counters["decisions"],
                    "degraded": self.counters["degraded"],
                    "undecided": self.pipeline.pending_onsets,
                },
                "stream_s": {
                    "received": self.samples_received / self.cfg.stream.sample_rate,
                    "processed": self.pipeline.samples_processed / self.cfg.stream.sample_rate,
                },
                "status": self.status(),
            }
        )
        self.publisher.close()
        if self.network_events is not None:
            self.network_events.close()
        if self.authenticator is not None:
            self.authenticator.stop()
        self.ctx.term()

    # -- receiver --------------------------------------------------------------------------------
    def _receive(self) -> None:
        s = self.cfg.stream
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.LINGER, 0)
        # A hard cap against absurd allocations (libzmq disconnects a peer that exceeds it, losing what
        # arrives until it reconnects), far above any real message; a merely oversized message
        # (more samples than a block can hold) is received, refused by the assembler and freed.
        sub.setsockopt(zmq.MAXMSGSIZE, MAX_DATA_MESSAGE_BYTES)
        sub.connect(f"tcp://{s.host}:{s.data_port}")
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
                try:
                    self._receive_one(msg, now)
                except Exception:  # a bug of ours must not stop the receiver: count it, keep the traceback
                    self.counters["internal_errors"] += 1
                    self.log("error: internal error in the receiver:\n" + traceback.format_exc())
        finally:
            for m in self.gate.flush():
                self._assemble(m, time.monotonic_ns())
            sub.close()
            self._receiver_done.set()

    def _receive_one(self, msg, now: int) -> None:
        if not isinstance(msg, DataMessage | TtlMessage):
            return  # valid messages of other kinds (spikes, text events): not used here
        for m in self.gate.admit(msg):
            self._assemble(m, now)

    def _assemble(self, msg: DataMessage | TtlMessage, now: int) -> None:
        if isinstance(msg, TtlMessage):
            anomalies = self.assembler.on_ttl(msg)
            if anomalies:
                self._put(AnomaliesItem(anomalies, now))
            self._put(TtlItem(msg.line, msg.state, msg.sample_num, now))
            return
        block, anomalies = self.assembler.on_data(msg, now)
        self._judge_fit(msg, anomalies, block is not None)
        if anomalies:
            self._put(AnomaliesItem(anomalies, now))
        if block is not None:
            if self.first_block_ns is None:
                self.first_block_ns = now
            self.samples_received += len(block.data)
            self._put(BlockItem(block.sample_num, block.data.copy(), now))

    def _judge_fit(self, msg: DataMessage, anomalies, block_complete: bool) -> None:
        verdict = self.fit.on_data(msg, anomalies, block_complete)
        if verdict == "unfit":
            self.state = f"waiting: {self.fit.unfit_reason}"
            self.log(f"warning: the stream does not fit; waiting for one that does: {self.fit.unfit_reason}")
        elif verdict == "fit":
            self.state = "running"
            self.log("note: the stream fits again; decoding resumed")

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
        """Wait for room as long as the worker is there to make it (also while draining on stop)."""
        while True:
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                worker_gone = self._worker is not None and not self._worker.is_alive()
                if self.state == "failed" or worker_gone:
                    self.counters["overruns"] += 1
                    return

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
                elif a.kind not in NOT_LOSSES:
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
                sock.setsockopt(zmq.MAXMSGSIZE, 4096)  # the plugin answers "heartbeat received"
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
    def _control_socket(self):
        o = self.cfg.outputs
        rep = self.ctx.socket(zmq.REP)
        rep.setsockopt(zmq.LINGER, 0)
        rep.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        if self.curve_keys is not None:
            make_server(rep, self.curve_keys)
        try:
            rep.bind(f"tcp://{o.bind_host}:{o.control_port}")
        except zmq.ZMQError as err:
            rep.close()
            self.fail(f"cannot bind the control socket {o.bind_host}:{o.control_port}: {err}")
            return None
        return rep

    def _control(self) -> None:
        rep = self._control_socket()
        if rep is None:
            return
        try:
            while not self._stop.is_set():
                if not rep.poll(100):
                    continue
                try:
                    cmd, error = parse_request(rep.recv_multipart())
                    if error is not None:
                        self.counters["bad_control_requests"] += 1
                        rep.send_json({"error": error})
                    elif cmd == "status":
                        rep.send_json(self.status())
                    else:
                        rep.send_json({"ok": True, "state": "draining"})
                        self.stop()
                except zmq.ZMQError as err:  # e.g. a reply the peer went away before: keep serving
                    self.log(f"warning: control socket: {err}")
                except Exception:  # a bug of ours must not silence status/stop
                    self.counters["internal_errors"] += 1
                    self.log("error: internal error in the control thread:\n" + traceback.format_exc())
                    rep.close()
                    rep = self._control_socket()
                    if rep is None:
                        return
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
                **self.gate.counters,
                **self.pipeline.counters(),
                **self.counters,
            },
            "latency": pct,
            "capacity": {
                "stream_s": stream_s,
                "stream_s_received": self.samples_received / self.cfg.stream.sample_rate,
                "worker_busy_s": self.busy_ns / 1e9,
                "first_block_ns": self.first_block_ns,
                "realtime_factor": stream_s / (self.busy_ns / 1e9) if self.busy_ns else None,
            },
            "decision_log": str(self.log_path),
            "run_id": self.run_id,
            "stream_unfit": self.fit.last_unfit_reason,
        }
