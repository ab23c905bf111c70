"""The online daemon: ZMQ Interface stream -> sorting -> trials -> neural image -> backend -> decisions.

A process and threads:

- **receiver process** (``rtdecode.stream.receiver``): SUB to the plugin's data port; parses every
  message (malformed ones are counted and logged, never fatal), assembles blocks, checks continuity
  and writes blocks into a preallocated shared-memory ring; TTLs, anomalies and lost spans travel
  beside them in stream order. Its own interpreter: sorting and inference never keep it from
  draining the socket. A full ring refuses the block, counts an overrun and marks the span degraded;
- **worker**: reads the receiver's events, blocks in place from the ring, feeds them to the one
  :class:`~rtdecode.pipeline.OnlinePipeline` (sorting, trials, decoding) and publishes its decisions;
  an exception of our own there is logged with its traceback and counted as an internal error. It
  also restarts a receiver process that died;
- **heartbeat**: REQ to data port + 1 every ``heartbeat_interval_s``; lazy-pirate reconnect when
  no reply arrives within ``heartbeat_timeout_s``;
- **control**: REP socket answering ``status`` and ``stop``.

Lifecycle (RTXI/Falcon style): starting -> ready (warmed up) -> running -> draining -> stopped,
or failed (e.g. the stream does not fit the bundle: the reason names both values). SIGINT/SIGTERM
and ``rtdecode stop`` drain: the receiver is stopped, what it sent is processed and the log closed
before exit. Latency per stage is stamped with ``time.monotonic_ns`` (one clock for both
processes) and reported per decision and as percentiles in ``status``.
"""

from __future__ import annotations

import json
import pickle
import tempfile
import threading
import time
import traceback
import uuid
from collections import deque
from pathlib import Path

import numpy as np
import zmq

from rtdecode.config import RigConfig
from rtdecode.control import MAX_RECEIVED_BYTES, parse_request
from rtdecode.curve import load_keys, make_server, start_authenticator
from rtdecode.decision_log import free_bytes
from rtdecode.degraded import Degraded
from rtdecode.errors import RtdecodeError
from rtdecode.parameters import default
from rtdecode.pipeline import LATENCY_STAGES, Decision, OnlinePipeline
from rtdecode.publish import DecisionPublisher
from rtdecode.stream.continuity import AnomalyKind
from rtdecode.stream.items import (
    AnomaliesItem,
    BlockItem,
    FitItem,
    LogItem,
    LostItem,
    ReceiverCounters,
    ReceiverEvent,
    ReceiverReady,
    RingBlockItem,
    TtlItem,
    WorkerItem,
)
from rtdecode.stream.receiver_process import ReceiverProcess
from rtdecode.stream.receiver_totals import ReceiverTotals

STAGES = tuple(LATENCY_STAGES)
#: The GUI's default block period (reference/openephys.md): the latency budget of one decision.
GUI_BLOCK_MS = default("gui.block_ms")
#: Below this, the decision log's file system gets a warning at start.
LOW_DISK_BYTES = 64 << 20
#: Latencies (per stage) and worker lags kept for the percentiles in ``status``: the latest ones.
LATENCIES_KEPT = 10_000
#: A receiver process alive but silent this long (it reports every 0.25 s) is stalled, not the upstream.
RECEIVER_QUIET_S = 1.0
#: Gaps said on the console (every one goes to the decision log).
GAPS_SAID = 20
#: At stop, how long a failing decision log is given to take what it kept in memory.
LOG_FLUSH_AT_STOP_S = 2.0


class Daemon:
    def __init__(
        self,
        config: RigConfig,
        bundle_path: str | Path,
        log_path: str | Path | None = None,
        ring_slots: int = 128,
        log=print,
        lossless: bool = False,
    ) -> None:
        """``lossless=True``: a full ring makes the receiver wait instead of dropping the block
        (throughput benchmarks; on a rig the plugin would drop upstream instead)."""
        self.cfg = config
        self.log = log
        # one handler per type the receiver sends: its news, and the stream items for the pipeline
        self._news = {
            ReceiverReady: lambda event: None,  # a replacement receiver process is up
            ReceiverCounters: self._on_counters,
            LogItem: lambda event: self.log(event.text),
            FitItem: self._on_fit,
        }
        self._items = {
            TtlItem: self._on_ttl,
            LostItem: self._on_lost,
            AnomaliesItem: self._on_anomalies,
            RingBlockItem: self._on_ring_block,
            BlockItem: self._on_block,
        }
        self.state = "starting"
        self.failure: str | None = None
        self.pipeline = OnlinePipeline.open(bundle_path, config, log=log)
        self.bundle = self.pipeline.bundle
        self.backend = self.pipeline.backend
        self.ctx = zmq.Context()
        o = config.outputs
        if log_path is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            log_path = Path(o.decision_log_dir) / f"decisions-{stamp}.jsonl"
        self.log_path = Path(log_path)
        self.run_id = uuid.uuid4().hex[:16]
        self.receiver_totals = ReceiverTotals()  # summed over replacements of the receiver process
        # block arrival in the receiver -> the worker takes it; the latest LATENCIES_KEPT blocks
        self.worker_lag_ms: deque[float] = deque(maxlen=LATENCIES_KEPT)
        self.curve_keys = load_keys(o.curve_server_key) if o.curve else None
        self.authenticator = start_authenticator(self.ctx, o.curve_authorized_clients) if o.curve else None
        self.publisher = DecisionPublisher(
            f"tcp://{o.bind_host}:{o.decision_port}",
            self.log_path,
            self.ctx,
            run_id=self.run_id,
            curve_server=self.curve_keys,
            on_log_change=log,
        )
        try:  # the start record, now: a log that cannot take it (full, /dev/full) refuses the run
            self._log_start()
        except RtdecodeError:
            self.publisher.close()
            if self.authenticator is not None:
                self.authenticator.stop()
            self.ctx.term()
            raise
        self.network_events = None
        if o.network_events is not None:
            from rtdecode.network_events import NetworkEventsSender

            ne = o.network_events
            self.network_events = NetworkEventsSender(
                f"tcp://{ne.host}:{ne.port}", ne.ttl_line, ne.pulse_ms, context=self.ctx
            )
        self.counters = {
            "internal_errors": 0,
            "decisions": 0,
            "degraded": 0,
            "heartbeat_failures": 0,
            "bad_control_requests": 0,
            "receiver_restarts": 0,
            "silences": 0,
            "own_feedback_ttls": 0,
        }
        self.feedback_sources: set[int] = set()  # GUI node ids of the daemon's own feedback pulses
        self.onset_sources: set[int] = set()  # GUI node ids that sent stimulus onsets
        self.last_data_mono: float | None = None  # monotonic time of the last block
        self.silent_since: float | None = None  # set while the upstream is silent
        self.silence_cause = Degraded.UPSTREAM_SILENT  # or RECEIVER_STALLED
        self.last_report_mono: float | None = None  # the receiver's last counters (sent every 0.25 s)
        self.latencies = {k: deque(maxlen=LATENCIES_KEPT) for k in STAGES}  # of the latest ok decisions (ms)
        self.busy_ns = 0  # worker time spent on stream items (capacity = stream time / busy time)
        self.last_unfit_reason: str | None = None
        self._stop = threading.Event()
        self._closed = False  # wait() has drained and closed everything (a second call returns at once)
        self._inject = None  # PUSH socket of inject(), made on first use
        self.threads: list[threading.Thread] = []
        self._worker: threading.Thread | None = None  # set at start
        self.started_at = time.time()
        self.warmup_inference_ms: float | None = None
        # last: it owns a shared-memory segment, which close() (from wait()) removes
        self.receiver = ReceiverProcess(
            config.stream, self.ctx, self.run_id, ring_slots, log=log, wait_when_full=lossless
        )

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

    def _log_start(self) -> None:
        health = self.publisher.log_health() or {}
        if health.get("repaired_bytes"):
            self.log(
                f"note: the decision log {self.log_path} ended in a torn line ({health['repaired_bytes']} bytes, from "
                "a run killed mid-write); it was cut off so every line parses"
            )
        self.publisher.log_event(
            {
                "event": "start",
                "run_id": self.run_id,
                "time": time.time(),
                "bundle": str(self.bundle.path),
                "bundle_files": self.bundle.manifest.files,
                "backend": self.backend.device,
                "config": self.cfg.model_dump(mode="json"),
                "repaired_bytes": health.get("repaired_bytes", 0),
            },
            strict=True,
        )
        free = free_bytes(self.log_path)
        if free is not None and free < LOW_DISK_BYTES:
            self.log(
                f"warning: only {free / 2**20:.0f} MiB free for the decision log {self.log_path}; decisions are "
                "still published when it fills, and kept in memory until it can be written"
            )

    def start(self) -> None:
        self.receiver.start()  # it boots while the pipeline warms up
        self.warmup()
        self.publisher.log_event({"event": "warmup", "inference_ms_median": self.warmup_inference_ms})
        # Heartbeats (which tell the GUI, or a replayer, that we listen) begin only once the receiver
        # subscribes: what is published before that is lost, as from any late subscriber.
        try:
            self.receiver.wait_ready()
        except Exception:
            self.receiver.close()
            raise
        self.state = "ready"
        for target, name in (
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
            f"{self.publisher.address}, log {self.log_path}, backend {self.backend.device}; receiver process "
            f"{self.receiver.pid}, ring {self.receiver.ring.slots} blocks ({self.receiver.ring_mib:.0f} MiB)"
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
        """Block until stopped; then drain and close everything (once: later calls return)."""
        self._stop.wait(timeout)
        if self._closed:
            return
        self._closed = True
        for t in self.threads:
            t.join(10)
        for decision in self.pipeline.finish(Degraded.SHUTDOWN):  # every onset gets its one decision
            self._publish(decision)
        self.pipeline.gaps.settle()  # lost messages data never resumed after: their span, no samples
        self._log_gaps()
        if self.state != "failed":
            self.state = "stopped"
        self.publisher.flush_log(wait_s=LOG_FLUSH_AT_STOP_S)  # what a failing log kept, if it takes it now
        stop_record = {
            "event": "stop",
            "run_id": self.run_id,
            "time": time.time(),
            "state": self.state,
            "failure": self.failure,
            "onsets": {
                "seen": self.pipeline.counters()["onsets"],
                "decided": self.counters["decisions"],
                "ok": self.counters["decisions"] - self.counters["degraded"],
                "degraded": self.counters["degraded"],
                "undecided": self.pipeline.pending_onsets,
            },
            "stream_s": {
                "received": self.receiver_totals.samples_received / self.cfg.stream.sample_rate,
                "processed": self.pipeline.samples_processed / self.cfg.stream.sample_rate,
                "lost": self.pipeline.gaps.lost_s,
            },
            "gaps": self.pipeline.gaps.summary(),
            "status": self.status(),
        }
        self.publisher.log_event(stop_record)
        self.publisher.close()
        self._account_unlogged(stop_record)
        self.receiver.close()
        if self._inject is not None:
            self._inject.close()
        if self.network_events is not None:
            self.network_events.close()
        if self.authenticator is not None:
            self.authenticator.stop()
        self.ctx.term()

    def _account_unlogged(self, stop_record: dict) -> None:
        """The log could not take everything (a disk that stayed full): say what is missing, and put
        the stop record where it can be written -- ``rtdecode-stop-<run_id>.json`` in the temp dir, or
        on the console -- never a traceback."""
        health = self.publisher.log_health()
        if not health or not health["unlogged"] and not health["dropped"]:
            return
        lost = health["unlogged"] + health["dropped"] - 1  # the stop record is the last one kept
        where = Path(tempfile.gettempdir()) / f"rtdecode-stop-{self.run_id}.json"
        try:
            where.write_text(json.dumps(stop_record) + "\n")
        except OSError as err:
            self.log(
                f"error: the decision log {self.log_path} is missing its last {lost} record(s) and the stop record "
                f"({health['error']}), which could not be written to {where} either ({err.strerror or err}); it is:\n"
                + json.dumps(stop_record)
            )
            return
        self.log(
            f"error: the decision log {self.log_path} is missing its last {lost} record(s) and the stop record "
            f"({health['error']}; every decision was published); the stop record is in {where}"
        )

    # -- worker ----------------------------------------------------------------------------------
    def inject(self, item: WorkerItem) -> None:
        """Hand the worker an item as if the receiver process had sent it (tests and tools)."""
        if self._inject is None:
            self._inject = self.ctx.socket(zmq.PUSH)
            self._inject.setsockopt(zmq.LINGER, 1000)
            self._inject.connect(self.receiver.events_address)
        self._inject.send(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))

    def _work(self) -> None:
        rp = self.receiver
        stopping_since: float | None = None
        while True:
            if self._stop.is_set() and stopping_since is None:
                rp.terminate()  # it flushes, sends its last events and final counters, and exits
                stopping_since = time.monotonic()
            event = rp.poll(100)
            self._check_silence()
            self.publisher.retry_log()
            if event is None:
                if stopping_since is not None:
                    if self.receiver_totals.final or not rp.alive or time.monotonic() - stopping_since > 10:
                        return
                elif not rp.alive:
                    code = rp.proc.returncode
                    self.counters["receiver_restarts"] += 1
                    self.log(
                        f"error: the receiver process exited ({code}); starting a new one (the stream it "
                        "misses is logged as a gap)"
                    )
                    self.pipeline.expect_gap(Degraded.RECEIVER_REPLACED)
                    rp.restart()
                continue
            self._on_event(event)

    def _own_feedback(self, ttl: TtlItem) -> bool:
        """A TTL the daemon's own Network Events route put into the GUI's stream: never an onset.

        Recognised by its source (the Network Events processor's node id, learnt from the pulses on
        the feedback line), not only by its line, so a feedback route can never count its own
        decisions as stimuli."""
        ne = self.cfg.outputs.network_events
        if ne is None or ttl.source_node is None:
            return False
        src = ttl.source_node
        if src in self.feedback_sources:
            self.counters["own_feedback_ttls"] += 1
            return True
        if ttl.line == self.cfg.trials.ttl_line:
            self.onset_sources.add(src)  # a source of stimulus onsets is never taken for our feedback route
        elif ttl.line == ne.ttl_line - 1 and self.network_events.sent and src not in self.onset_sources:
            self.feedback_sources.add(src)
            self.counters["own_feedback_ttls"] += 1
            self.log(f"note: feedback TTLs come from source node {src}; its TTLs are never onsets")
            return True
        return False

    def _check_silence(self) -> None:
        """No block for ``silence_timeout_s`` while running: the GUI stopped or crashed, acquisition was
        stopped or a cable is out -- or our own receiver process stopped reporting (stopped, starved of
        CPU), which the daemon tells apart by the counters it sends every quarter second. Say so once,
        decide every open trial ``degraded: upstream silent`` (or ``receiver stalled``; their windows
        will not close), and wait: the next block resumes decoding."""
        if self.silent_since is not None or self.last_data_mono is None or self.state != "running":
            return
        now = time.monotonic()
        if now - self.last_data_mono < self.cfg.stream.silence_timeout_s:
            return
        self.silent_since = self.last_data_mono
        quiet = now - self.last_report_mono if self.last_report_mono is not None else 0.0
        stalled = self.receiver.alive and quiet > RECEIVER_QUIET_S
        self.silence_cause = Degraded.RECEIVER_STALLED if stalled else Degraded.UPSTREAM_SILENT
        self.state = "silent"
        self.counters["silences"] += 1
        if stalled:
            self.log(
                f"warning: no data for {now - self.last_data_mono:.1f} s and the receiver process "
                f"{self.receiver.pid} has not reported for {quiet:.1f} s (stopped, or starved of CPU); open "
                "trials are decided degraded; what the publisher drops meanwhile is logged as a gap"
            )
        else:
            self.log(
                f"warning: upstream silent for {now - self.last_data_mono:.1f} s (GUI stopped or crashed, "
                f"acquisition stopped, or a cable out; heartbeat failures so far: "
                f"{self.counters['heartbeat_failures']}); open trials are decided degraded; waiting for data"
            )
        self.publisher.log_event(
            {"event": "silent", "run_id": self.run_id, "time": time.time(), "cause": self.silence_cause}
        )
        for decision in self.pipeline.finish(self.silence_cause):
            self._publish(decision)

    def _data_arrived(self) -> None:
        now = time.monotonic()
        if self.silent_since is not None:
            gap = now - self.silent_since
            self.silent_since = None
            self.state = "running"
            self.log(f"note: data again after {gap:.1f} s of silence; decoding resumed")
            self.publisher.log_event({"event": "resumed", "run_id": self.run_id, "time": time.time(), "silent_s": gap})
        self.last_data_mono = now

    def _on_event(self, event: ReceiverEvent) -> None:
        """Receiver news (counters, logs, the stream's fit) is taken here; stream items go to the
        pipeline through :meth:`_handle`. One handler per item type (:attr:`_news`, :attr:`_items`)."""
        news = self._news.get(type(event))
        if news is not None:
            news(event)
            return
        t0 = time.monotonic_ns()
        try:
            for decision in self._handle(event):
                self._publish(decision)
        except Exception as err:  # a bug of ours, not bad input: count it, keep the traceback, go on
            self.counters["internal_errors"] += 1
            self.log(
                f"error: internal error while processing {type(event).__name__} ({type(err).__name__}: {err}):\n"
                + traceback.format_exc()
            )
        finally:
            if isinstance(event, RingBlockItem):
                self.receiver.ring.release(event.seq)
        self.busy_ns += time.monotonic_ns() - t0
        self._log_gaps()

    def _log_gaps(self) -> None:
        """Each span of stream not seen whole goes to the log once, with its sample range and cause
        (and to the console, the first :data:`GAPS_SAID` of them)."""
        ledger = self.pipeline.gaps
        new = ledger.take_new()
        for number, gap in enumerate(new, start=ledger.count - len(new) + 1):  # the gap's number in the run
            self.publisher.log_event({"event": "gap", "run_id": self.run_id, **gap.record()})
            if number > GAPS_SAID:
                continue
            missing = "; stimulus onsets in it may be missing" if gap.onsets_may_be_missing else ""
            self.log(
                f"warning: {gap.seconds:.3f} s of stream not seen whole (samples {gap.start_sample}-{gap.end_sample}, "
                f"segment {gap.segment}): {gap.cause}{missing}"
                + (f"; further gaps go to the log {self.log_path} only" if number == GAPS_SAID else "")
            )

    # -- receiver news -----------------------------------------------------------------------------
    def _on_counters(self, event: ReceiverCounters) -> None:
        self.receiver_totals.update(event)
        self.last_report_mono = time.monotonic()

    def _on_fit(self, event: FitItem) -> None:
        if event.reason is not None:
            self.state = f"waiting: {event.reason}"
            self.last_unfit_reason = event.reason
            self.log(f"warning: the stream does not fit; waiting for one that does: {event.reason}")
        else:
            self.state = "running"
            self.log("note: the stream fits again; decoding resumed")

    # -- stream items -> the pipeline ----------------------------------------------------------------
    def _handle(self, item: WorkerItem) -> list[Decision]:
        return self._items[type(item)](item)

    def _on_ttl(self, item: TtlItem) -> list[Decision]:
        if not self._own_feedback(item):
            self.pipeline.on_ttl(item.line, item.state, item.sample)
        return []

    def _on_lost(self, item: LostItem) -> list[Decision]:
        self.pipeline.on_lost(item.start, item.end, Degraded.RING_OVERRUN)
        return []

    def _on_anomalies(self, item: AnomaliesItem) -> list[Decision]:
        p = self.pipeline
        out: list[Decision] = []
        for a in item.anomalies:
            if a.kind is AnomalyKind.RESTART:
                out += p.on_restart(item.arrival_ns, Degraded.RESTART)
                self.log(f"note: new segment {p.segment} ({a.detail}): a stop/start, a restart or a playback loop")
                self.publisher.log_event(
                    {"event": "segment", "run_id": self.run_id, "segment": p.segment, "cause": a.detail}
                )
            elif a.kind.loses_data:
                p.on_lost(a.start_sample, a.end_sample, Degraded.of_anomaly(a.kind), a.data_end_unknown)
        return out

    def _on_ring_block(self, item: RingBlockItem) -> list[Decision]:
        first, data, arrival = self.receiver.ring.view(item.seq)  # in place: released after this returns
        return self._on_samples(first, data, arrival)

    def _on_block(self, item: BlockItem) -> list[Decision]:  # injected (tests, the offline path)
        return self._on_samples(item.first_sample, item.data, item.arrival_ns)

    def _on_samples(self, first: int, data: np.ndarray, arrival: int) -> list[Decision]:
        if self.state == "ready":
            self.state = "running"
        self._data_arrived()
        self.worker_lag_ms.append((time.monotonic_ns() - arrival) / 1e6)
        return self.pipeline.on_block(first, data, arrival)

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
        if not s.source.heartbeat:
            return  # e.g. Falcon Output: no heartbeat socket
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
        rep.setsockopt(zmq.MAXMSGSIZE, MAX_RECEIVED_BYTES)  # an oversized request still gets its error
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
                    else:
                        rep.send_json(self._control_commands[cmd]())
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

    @property
    def _control_commands(self) -> dict:
        """What each control command answers (rtdecode.control.COMMANDS)."""
        return {"status": self.status, "image": self.images, "stop": self._stop_requested}

    def _stop_requested(self) -> dict:
        self.stop()
        return {"ok": True, "state": "draining"}

    def images(self) -> dict:
        """The latest trial's neural image and the mean image per called class (the dashboard's)."""
        return {"run_id": self.run_id, **self.pipeline.decoder.images()}

    def status(self) -> dict:
        fs = self.cfg.stream.sample_rate
        stream_s = self.pipeline.samples_processed / fs
        rc = self.receiver_totals
        rc_counters = rc.counters
        received_s = rc.samples_received / fs
        pct = {}
        for stage, values in self.latencies.items():
            if values:
                v = np.asarray(list(values))  # list(): one copy under the GIL while the worker appends
                pct[stage] = {
                    "p50_ms": float(np.percentile(v, 50)),
                    "p99_ms": float(np.percentile(v, 99)),
                    "n": self.counters["decisions"] - self.counters["degraded"],  # every ok decision's
                    "of_latest": len(v),
                }
        state = self.state
        if self.silent_since is not None and state == "silent":
            state = f"{self.silence_cause} for {time.monotonic() - self.silent_since:.0f} s"
        return {
            "state": state,
            "failure": self.failure,
            "bundle": str(self.bundle.path),
            "backend": self.backend.device,
            "uptime_s": time.time() - self.started_at,
            "warmup_inference_ms": self.warmup_inference_ms,
            "counters": {
                "malformed": 0,
                "overruns": 0,
                **rc_counters,
                **self.pipeline.counters(),
                **self.counters,
                "internal_errors": self.counters["internal_errors"] + rc_counters.get("internal_errors", 0),
            },
            "latency": pct,
            "image_scale": self.pipeline.image_scale,
            "baseline": self.pipeline.baseline_status,
            "capacity": {
                "stream_s": stream_s,
                "stream_s_received": received_s,
                "worker_busy_s": self.busy_ns / 1e9,
                "first_block_ns": rc.first_block_ns,
                "realtime_factor": stream_s / (self.busy_ns / 1e9) if self.busy_ns else None,
            },
            "receiver": self._receiver_status(received_s),
            "streams_on_offer": rc.streams,
            "gaps": {**self.pipeline.gaps.summary(), "recent": [g.record() for g in self.pipeline.gaps.recent[-10:]]},
            "decision_log": str(self.log_path),
            "decision_log_health": self.publisher.log_health(),
            "run_id": self.run_id,
            "stream_unfit": self.last_unfit_reason,
            "stream": {
                "protocol": self.cfg.stream.protocol,
                "stream_name": self.cfg.stream.stream_name,
                "channel_count": self.cfg.stream.channel_count,
                "sample_rate": fs,
            },
            "units": {"spikes": self.pipeline.tracker.unit_spikes.tolist(), "stream_s": stream_s},
            "motion": self.pipeline.motion_status(),
        }

    def ring_fill(self) -> int:
        """Blocks in the ring not yet taken by the worker (0 once the daemon has failed or stopped)."""
        ring = self.receiver.ring
        if self.state in ("failed", "stopped") or ring.header is None:
            return 0
        return ring.fill

    def _receiver_status(self, received_s: float) -> dict:
        rp, rc = self.receiver, self.receiver_totals
        rc_counters = rc.counters
        lag = np.asarray(list(self.worker_lag_ms)) if self.worker_lag_ms else None
        return {
            "pid": rp.pid,
            "alive": rp.alive,
            "restarts": rp.restarts,
            "ring_slots": rp.ring.slots,
            "ring_fill": self.ring_fill(),
            "ring_high_water": rc_counters.get("ring_high_water", 0),
            "overruns": rc_counters.get("overruns", 0),
            "cpu_s": rc.cpu_s,
            "cpu_per_stream_s": rc.cpu_s / received_s if received_s else None,
            "lag_ms": None
            if lag is None
            else {"p50": float(np.percentile(lag, 50)), "p99": float(np.percentile(lag, 99)), "max": float(lag.max())},
        }
