"""The receiver process: drains the data SUB socket, parses, assembles, writes blocks into the ring.

It runs as its own interpreter (``python -m rtdecode.stream.receiver SPEC``), so no sorting or
inference ever holds it up: it takes messages off the socket as fast as they come, whatever the
worker is doing, and libzmq's queue on our side never grows. For each message it

- parses it with the reader of the configured :class:`~rtdecode.stream.sources.StreamSource`
  (a malformed one is counted and logged, never fatal);
- passes it through the :class:`~rtdecode.stream.gate.StrayGate` and the reader's assembler
  (continuity, foreign messages, restarts), which judges with
  :class:`~rtdecode.stream.fit.StreamFit` whether the stream fits;
- writes each complete block into the shared-memory :class:`~rtdecode.stream.ring.BlockRing` and
  tells the worker its sequence number; TTLs, anomalies, lost spans (a full ring), verdicts and
  counters travel beside it, in stream order, on one PUSH socket (``rtdecode.stream.items``).

It stops on SIGTERM (flushing what the gate holds and sending its final counters), ignores SIGINT
(the daemon drains first, then stops it), and exits by itself when the daemon that started it is
gone (``kill -9``), so it never outlives it.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import zmq

from rtdecode.stream import sources
from rtdecode.stream.fit import StreamFit
from rtdecode.stream.gate import StrayGate
from rtdecode.stream.items import (
    AnomaliesItem,
    FitItem,
    LogItem,
    LostItem,
    ReceiverCounters,
    ReceiverReady,
    RingBlockItem,
)
from rtdecode.stream.protocol import ProtocolError
from rtdecode.stream.ring import BlockRing

#: A hard cap against absurd allocations (libzmq disconnects a peer that exceeds it), far above any
#: real message; a merely oversized message is received, refused by the assembler and freed.
MAX_DATA_MESSAGE_BYTES = 64 << 20
COUNTERS_EVERY_S = 0.25
#: Messages taken off the socket per wake-up before the counters and the stop flag are looked at.
DRAIN_MAX = 4096
#: How long to wait for the handshake with a publisher before saying "ready" (none may be running yet).
CONNECT_WAIT_S = 1.0
MAX_LOGGED_MALFORMED = 20


@dataclass
class ReceiverSpec:
    """Everything the receiver process needs, passed as JSON on its command line."""

    host: str
    data_port: int
    channel_count: int
    stream_name: str | None
    sample_rate: float
    channel_numbers: list[int] | None
    ring_name: str
    ring_slots: int
    slot_samples: int
    events_address: str
    parent_pid: int
    protocol: str  # a registered stream source (rtdecode.stream.sources)
    protocol_module: str  # the module that registers it (imported here first)
    #: wait for room when the ring is full instead of refusing the block (lossless benchmarks and
    #: offline replays; a rig drops and degrades, so the receiver never stops draining the socket)
    wait_when_full: bool = False
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ReceiverSpec:
        return cls(**json.loads(text))


class Receiver:
    """One subscription's receiving, socket-free at its core: :meth:`feed` takes one message's frames
    and :meth:`flush` ends the stream, each item going to ``send`` in stream order. ``send`` is the
    PUSH socket to the daemon when None (the process, :meth:`run`); a test passes ``list.append``
    and feeds frames by hand."""

    def __init__(self, spec: ReceiverSpec, send: Callable[[object], None] | None = None) -> None:
        self.spec = spec
        self.reader = sources.get(spec.protocol, spec.protocol_module).reader(spec)
        self.assembler = self.reader.assembler
        self.gate = StrayGate(self.assembler)  # one gate for every protocol
        self.fit = StreamFit(spec.channel_count, spec.sample_rate, self.assembler.streams_seen)
        self.ring = BlockRing(spec.ring_name, spec.ring_slots, spec.slot_samples, spec.channel_count, create=False)
        self.ctx = zmq.Context()
        self.events = None
        if send is None:
            self.events = self.ctx.socket(zmq.PUSH)
            self.events.setsockopt(zmq.SNDHWM, 0)  # events are few and must never be dropped
            self.events.setsockopt(zmq.LINGER, 5000)
            self.events.connect(spec.events_address)
            send = self._push
        self._emit = send
        self.counters = {"malformed": 0, "internal_errors": 0, "overruns": 0, "ring_high_water": 0}
        self.samples_received = 0
        self.first_block_ns: int | None = None
        self._lost: LostItem | None = None  # consecutive refused blocks, sent as one span
        self._stop = False
        self._cpu0 = 0.0  # CPU time when the receive loop began (imports and setup are not receiving)

    # -- events ------------------------------------------------------------------------------------
    def _push(self, item) -> None:
        self.events.send(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))

    def _send(self, item) -> None:
        if self._lost is not None and not isinstance(item, LostItem):
            lost, self._lost = self._lost, None
            self._emit(lost)
        self._emit(item)

    def _log(self, text: str) -> None:
        self._send(LogItem(text))

    def _send_counters(self, final: bool = False) -> None:
        assembler = self.assembler
        counters = {**assembler.counters, **self.gate.counters, **self.counters}
        cpu = time.process_time() - self._cpu0
        streams = {k: dict(v) for k, v in assembler.streams_seen.items()}
        self._send(
            ReceiverCounters(counters, self.samples_received, self.first_block_ns, cpu, final, streams, os.getpid())
        )

    # -- messages ----------------------------------------------------------------------------------
    def feed(self, frames: list, now_ns: int | None = None) -> None:
        """One message's frames as the socket delivers them (``now_ns``: its arrival, monotonic; now
        when None). Never raises: a bug of ours is counted and its traceback logged."""
        try:
            self._on_frames(frames, time.monotonic_ns() if now_ns is None else now_ns)
        except Exception:
            self.counters["internal_errors"] += 1
            self._log("error: internal error in the receiver:\n" + traceback.format_exc())

    def flush(self, now_ns: int | None = None) -> None:
        """The stream ends here: what the gate holds is assembled, a pending lost span and the final
        counters are sent."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        for m in self.gate.flush():
            self._assemble(m, now)
        if self._lost is not None:
            lost, self._lost = self._lost, None
            self._send(lost)
        self._send_counters(final=True)

    def _on_frames(self, frames: list, now: int) -> None:
        try:
            msg = self.reader.parse(frames)
        except ProtocolError as err:
            self.counters["malformed"] += 1
            if self.counters["malformed"] <= MAX_LOGGED_MALFORMED:
                self._log(f"warning: malformed message ignored: {err}")
            return
        if msg is None:
            return  # a valid message of a kind not used here
        for m in self.gate.admit(msg):
            self._assemble(m, now)

    def _assemble(self, msg, now: int) -> None:
        out = self.reader.assemble(msg, now, self.fit)
        if out.verdict is not None:
            self._send(FitItem(self.fit.unfit_reason))  # None: the stream fits again
        if out.anomalies:
            self._send(AnomaliesItem(out.anomalies, now))
        for ttl in out.ttls:
            self._send(ttl)
        if out.block is not None:
            if self.first_block_ns is None:
                self.first_block_ns = now
            self.samples_received += len(out.block.data)
            self._to_ring(out.block.sample_num, out.block.data, now)

    def _to_ring(self, first: int, data, now: int) -> None:
        step = self.ring.slot_samples
        for i in range(0, len(data), step):  # a block longer than a slot takes several (never seen from the GUI)
            chunk = data[i : i + step]
            seq = self.ring.write(first + i, chunk, now)
            while seq is None and self.spec.wait_when_full and not self._stop:
                time.sleep(0.0002)
                seq = self.ring.write(first + i, chunk, now)
            if seq is None:
                self.counters["overruns"] += 1
                start, end = first + i, first + i + len(chunk)
                if self._lost is not None and self._lost.end == start:
                    self._lost.end = end
                else:
                    if self._lost is not None:
                        self._send(self._lost)
                    self._lost = LostItem(start, end, now)
                continue
            self._send(RingBlockItem(seq))
            self.counters["ring_high_water"] = max(self.counters["ring_high_water"], self.ring.fill)

    # -- loop --------------------------------------------------------------------------------------
    def run(self) -> None:
        s = self.spec
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.RCVHWM, 0)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.MAXMSGSIZE, MAX_DATA_MESSAGE_BYTES)
        self._send(ReceiverReady(os.getpid(), self._connect(sub, f"tcp://{s.host}:{s.data_port}")))
        next_counters = time.monotonic() + COUNTERS_EVERY_S
        self._cpu0 = time.process_time()
        try:
            copy = self.reader.copy_frames  # large frames are read in place, small ones copied
            while not self._stop:
                if sub.poll(100):
                    # drain what is queued without a poll per message (384 messages per block)
                    for _ in range(DRAIN_MAX):
                        try:
                            frames = sub.recv_multipart(zmq.NOBLOCK, copy=copy)
                        except zmq.Again:
                            break
                        self.feed(frames if copy else [f.buffer for f in frames])
                if time.monotonic() >= next_counters:
                    next_counters = time.monotonic() + COUNTERS_EVERY_S
                    self._send_counters()
                    if os.getppid() != s.parent_pid:  # the daemon is gone (kill -9): so are we
                        break
        finally:
            self.flush()
            sub.close()
            self.close()

    def close(self) -> None:
        if self.events is not None:
            self.events.close()
        self.ring.close()
        self.ctx.term()

    @staticmethod
    def _connect(sub, address: str) -> bool:
        """Connect; True once the handshake with a publisher completed (within ``CONNECT_WAIT_S``)."""
        from zmq.utils.monitor import recv_monitor_message

        monitor = sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        try:
            sub.connect(address)
            if monitor.poll(int(CONNECT_WAIT_S * 1000)):
                recv_monitor_message(monitor)
                return True
            return False
        finally:
            sub.disable_monitor()
            monitor.close()

    def stop(self, *_args) -> None:
        self._stop = True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m rtdecode.stream.receiver SPEC_JSON (started by rtdecode serve)", file=sys.stderr)
        return 2
    receiver = Receiver(ReceiverSpec.from_json(argv[0]))
    signal.signal(signal.SIGTERM, receiver.stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    receiver.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
