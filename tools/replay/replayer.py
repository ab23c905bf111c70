"""Re-publish an Open Ephys Binary recording exactly as the GUI's ZMQ Interface plugin does.

The recording is read with open-ephys-python-tools. Per block (the real GUI's 696 samples at 30 kHz
-- its audio callback of 1,024 frames at 44.1 kHz --, a fixed ``block_samples``, or seeded variable
sizes with ``variable_blocks``): the block's TTL events first (0-based lines on the wire; 1-based on
disk), then one float32 uV DATA message per channel, ascending; ``message_num`` from 1; headers
byte-for-byte as the plugin writes them
(``rtdecode.stream.protocol``). A REP socket on ``port + 1`` answers heartbeats like the plugin
(``heartbeat received``). Pacing follows a monotonic clock at ``speed`` x real time (or as fast as
possible with ``speed=None``). Like the plugin it sends ``content.channel_name`` (current builds
always do), only the channels selected in its mask (``channels``: ``channel_num`` keeps the
recording's numbering, so it may have gaps), and keeps libzmq's default send high-water mark of
1,000 messages, dropping silently beyond it when a subscriber falls behind; ``send_hwm=0`` is the
explicit lossless mode for throughput benchmarks. On close it lingers 30 s (lossless: up to 10 min,
so a slower subscriber still receives the whole tail).

With ``protocol=FALCON_OUTPUT`` it publishes as the Falcon Output plugin does instead
(``rtdecode.stream.falcon``): one FlatBuffers message per block holding every selected channel,
channel-major, and a per-sample ``event_codes`` word with the TTL lines (0..15) as bits;
``message_id`` from 1; no heartbeat socket (the plugin has none: a subscription on the XPUB socket
is what ``wait_for_heartbeat_s`` waits for); libzmq's default send high-water mark of 1,000
messages, which is 1,000 blocks there.

Like the GUI 1.0.1 playing a recording through its File Reader (measured side by side, tests in
``tests/test_real_gui.py``): the stream is named as the File Reader names it (the recording's folder,
``Neuropix-PXI-100.ProbeA-AP``; ``file_reader_names=False`` sends the recorded stream name);
``origin="zero"`` numbers samples from 0 as playback does (the default, ``"recording"``, keeps the
recording's own sample numbers, as a live acquisition's); a ``restart`` is the GUI's stop and start
(``message_num`` from 1, ``sample_num`` going on); with ``loop`` the file plays again with
``message_num`` going on and ``sample_num`` back at the start (the GUI's wrap block holds the file's
tail and its first samples; ours ends short at the tail).

Faults for tests, each at a message count ``K`` (the plugin's ``message_num`` it would have had):
``drop=K``, ``duplicate=K``, ``reorder=K`` (K+1 is sent before K), ``truncate=K`` (payload cut
in half), ``corrupt=K`` (header not JSON), ``restart=K`` (acquisition stopped and started before message K,
as the GUI does it: ``message_num`` starts again from 1, ``sample_num`` goes on), ``stall=K:SECONDS``, and
``stray=K:WHAT`` -- one extra DATA message, not the plugin's, sent before message K, a copy of K's
header with one thing wrong: ``channel`` (channel_num = the channel count), ``rate`` (25 kHz),
``stream`` (another stream's name), ``sample`` (an absurd sample_num, with K's own message_num,
as an injected message would carry), ``stranger`` (another publisher's message_num 1), ``twin``
(K's message_num and sample_num for another of the stream's channels: only its place in the block
tells it from the real K) or ``huge`` (1 M samples in one message). Falcon Output takes all but
``twin`` (its blocks hold every channel), with ``K`` counting blocks: ``corrupt`` overwrites the
table's root offset, and a stray is a copy of block K with the one thing wrong (its ``message_id``
for ``sample``; 1 for ``stranger``); ``id`` (Falcon only) carries an absurd ``message_id`` (10^6)
and K's samples.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import flatbuffers
import numpy as np
import zmq

from rtdecode.errors import RecordingError
from rtdecode.stream import falcon_output_source, zmq_interface_source
from rtdecode.stream.falcon import FALCON_TTL_LINES, parse_continuous_data, serialise_continuous_data
from rtdecode.stream.protocol import EVENT_ENVELOPE, BlockFramer, ttl_frames
from rtdecode.stream.recording import RecordingSource

#: The ZMQ Interface plugin's send high-water mark: libzmq's default, which the plugin keeps.
PLUGIN_SEND_HWM = 1000
CLOSE_LINGER_MS = 30_000
LOSSLESS_LINGER_MS = 600_000
FAULT_KINDS = ("drop", "duplicate", "reorder", "truncate", "corrupt", "restart", "stall", "stray")
STRAY_KINDS = ("channel", "rate", "stream", "sample", "stranger", "huge", "twin", "id")
ZMQ_INTERFACE, FALCON_OUTPUT = zmq_interface_source.NAME, falcon_output_source.NAME
#: The sources this replayer publishes as (the registry may hold others: it has no writer for them).
PROTOCOLS = (ZMQ_INTERFACE, FALCON_OUTPUT)
ORIGINS = ("recording", "zero")


@dataclass
class Fault:
    kind: str
    at: int  # message count (1-based)
    seconds: float = 0.0
    what: str = ""  # stray: what is wrong with the extra message

    @classmethod
    def parse(cls, text: str) -> Fault:
        if "=" not in text:
            raise ValueError(f"fault {text!r}: expected KIND=MESSAGE (e.g. drop=500) or stall=MESSAGE:SECONDS")
        kind, value = text.split("=", 1)
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {kind!r}: expected one of {', '.join(FAULT_KINDS)}")
        seconds = 0.0
        what = ""
        if kind == "stray":
            value, _, what = value.partition(":")
            if what not in STRAY_KINDS:
                raise ValueError(f"fault {text!r}: stray needs MESSAGE:WHAT with WHAT one of {', '.join(STRAY_KINDS)}")
        if kind == "stall":
            if ":" not in value:
                raise ValueError(f"fault {text!r}: stall needs MESSAGE:SECONDS, e.g. stall=800:0.5")
            value, sec = value.split(":", 1)
            try:
                seconds = float(sec)
            except ValueError:
                seconds = math.nan
            if not (math.isfinite(seconds) and 0 <= seconds <= 3600):
                raise ValueError(f"fault {text!r}: stall seconds {sec!r} must be a number from 0 to 3600")
        try:
            at = int(value)
        except ValueError:
            raise ValueError(f"fault {text!r}: message count {value!r} is not an integer") from None
        if at < 1:
            raise ValueError(f"fault {text!r}: message count must be >= 1")
        return cls(kind, at, seconds, what)


@dataclass
class ReplayStats:
    messages_sent: int = 0
    blocks: int = 0
    ttl_events: int = 0
    samples: int = 0
    faults_applied: dict = field(default_factory=dict)
    wall_s: float = 0.0
    heartbeats: int = 0


class _Rendered:
    """Stands in for the PUB socket while a preloading replayer renders every message."""

    def __init__(self) -> None:
        self.frames: list[list[bytes]] = []
        self.block_starts: list[tuple[int, int]] = []  # (first sample index, first message index)
        self.n_samples = 0

    def send_multipart(self, frames: list[bytes]) -> None:
        self.frames.append(frames)


class Replayer:
    def __init__(
        self,
        recording_dir: str | Path,
        port: int = 5556,
        host: str = "127.0.0.1",
        speed: float | None = 1.0,
        block_samples: int | None = None,
        loop: bool = False,
        faults: list[Fault] | None = None,
        wait_for_heartbeat_s: float = 0.0,
        channel_names: bool = True,
        seed: int = 0,
        preload: bool = False,
        channels: list[int] | None = None,
        send_hwm: int = PLUGIN_SEND_HWM,
        protocol: str = ZMQ_INTERFACE,
        origin: str = "recording",
        file_reader_names: bool = True,
        variable_blocks: bool = False,
    ) -> None:
        if origin not in ORIGINS:
            raise ValueError(f"origin {origin!r}: expected one of {', '.join(ORIGINS)}")
        if preload and faults:
            raise ValueError("preload renders every message before sending; it cannot inject faults")
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
        if protocol != FALCON_OUTPUT and any(f.kind == "stray" and f.what == "id" for f in faults or []):
            raise ValueError("stray=K:id is a Falcon Output message (message_id); the ZMQ Interface's is 'stranger'")
        if protocol == FALCON_OUTPUT and any(f.kind == "stray" and f.what == "twin" for f in faults or []):
            raise ValueError("stray=K:twin claims another channel of a block; Falcon Output sends whole blocks")
        self.protocol = protocol
        self.source = RecordingSource(recording_dir)
        self.variable_blocks = variable_blocks
        self.stream_name = self.source.file_reader_stream_name if file_reader_names else self.source.stream_name
        #: subtracted from the recording's sample numbers: 0, or its first sample (File Reader playback)
        self.origin = int(self.source.sample_numbers[0]) if origin == "zero" else 0
        self._numbers = 0  # message_num / message_id so far: a loop goes on counting, as the GUI does
        self.preload = preload
        self.port = int(port)
        self.host = host
        self.speed = speed
        self.block_samples = block_samples
        self.loop = loop
        self.faults = {f.at: f for f in (faults or [])}
        self.wait_for_heartbeat_s = wait_for_heartbeat_s
        self.send_channel_names = channel_names
        self.seed = seed
        n = self.source.n_channels
        self.channels = list(range(n)) if channels is None else [int(c) for c in channels]
        if (
            not self.channels
            or sorted(set(self.channels)) != self.channels
            or not 0 <= self.channels[0] <= self.channels[-1] < n
        ):
            raise ValueError(f"channels {channels}: expected ascending, distinct channel numbers from 0 to {n - 1}")
        if send_hwm < 0:
            raise ValueError(f"send_hwm {send_hwm}: expected 0 (lossless) or a positive number of messages")
        self.send_hwm = int(send_hwm)
        self.stats = ReplayStats()
        self._stop = threading.Event()
        self._aborted = False
        self._heartbeat_seen = threading.Event()
        self._ctx = zmq.Context.instance()

    def stop(self) -> None:
        """Stop sending; what is still queued is dropped at close (no linger)."""
        self._aborted = True
        self._stop.set()

    # -- heartbeat REP on port + 1 ----------------------------------------------------------------
    def _heartbeat_loop(self, ready: threading.Event) -> None:
        rep = self._ctx.socket(zmq.REP)
        rep.setsockopt(zmq.LINGER, 0)
        rep.bind(f"tcp://{self.host}:{self.port + 1}")
        ready.set()
        try:
            while not self._stop.is_set():
                if not rep.poll(100):
                    continue
                raw = rep.recv()
                try:
                    msg = json.loads(raw)
                    reply = "message correctly parsed" if msg.get("type") == "event" else "heartbeat received"
                    self.stats.heartbeats += 1
                    self._heartbeat_seen.set()
                except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                    reply = "JSON message could not be read"
                rep.send(reply.encode())
        finally:
            rep.close()

    # -- publishing --------------------------------------------------------------------------------
    def run(self) -> ReplayStats:
        falcon = self.protocol == FALCON_OUTPUT
        # XPUB sends as PUB does and also tells us when a subscriber is there (Falcon has no heartbeat)
        pub = self._ctx.socket(zmq.XPUB if falcon else zmq.PUB)
        # Long enough that a slower subscriber still gets the tail of a lossless replay before we exit.
        # Lossless, what is queued is never dropped at close: wait (up to 10 min) for the subscriber.
        pub.setsockopt(zmq.LINGER, CLOSE_LINGER_MS if self.send_hwm else LOSSLESS_LINGER_MS)
        # The plugin keeps libzmq's default (1,000 messages) and drops beyond it when a subscriber falls
        # behind; 0 (lossless, for throughput benchmarks) never drops.
        pub.setsockopt(zmq.SNDHWM, self.send_hwm)
        try:
            pub.bind(f"tcp://{self.host}:{self.port}")
        except zmq.ZMQError as err:
            pub.close()
            raise RecordingError(
                f"cannot bind tcp://{self.host}:{self.port} for replay: {err} (is the GUI or "
                "another replayer using it? choose another --port)"
            ) from None
        hb_ready = threading.Event()
        hb = threading.Thread(target=self._heartbeat_loop, args=(hb_ready,), daemon=True, name="replay-heartbeat")
        if not falcon:
            hb.start()
            hb_ready.wait(5)
        if self.wait_for_heartbeat_s > 0 and falcon:
            if pub.poll(int(self.wait_for_heartbeat_s * 1000)):
                pub.recv()  # a subscription: b"\x01" + topic
                time.sleep(0.2)
        elif self.wait_for_heartbeat_s > 0:
            self._heartbeat_seen.wait(self.wait_for_heartbeat_s)
            time.sleep(0.2)  # let the subscriber's SUB finish connecting
        t_start = time.monotonic()
        try:
            rendered = None
            if self.preload:  # render once (not timed as replay), then only send
                rendered = _Rendered()
                self._replay_once(rendered)
                rendered.n_samples = self.stats.samples
                self.stats = ReplayStats(heartbeats=self.stats.heartbeats)  # count what is actually sent
                t_start = time.monotonic()
            while True:
                if rendered is not None:
                    self._send_rendered(pub, rendered)
                else:
                    self._replay_once(pub)
                if not self.loop or self._stop.is_set():
                    break
        finally:
            self.stats.wall_s = time.monotonic() - t_start
            self._stop.set()
            if hb.is_alive():
                hb.join(2)
            if self._aborted:
                pub.setsockopt(zmq.LINGER, 0)
            pub.close()
        return self.stats

    def _send(self, pub, frames: list[bytes], count: int, pending: list) -> None:
        f = self.faults.get(count)
        if f is not None and f.kind == "restart":
            f = None  # applied at the start of its block (see _replay_once)
        if f is not None and f.kind == "stall":
            time.sleep(f.seconds)
            self.stats.faults_applied["stall"] = self.stats.faults_applied.get("stall", 0) + 1
            f = None
        if f is not None:
            self.stats.faults_applied[f.kind] = self.stats.faults_applied.get(f.kind, 0) + 1
            if f.kind == "drop":
                return
            if f.kind == "stray":
                pub.send_multipart(self._stray(frames, f.what))
                self.stats.messages_sent += 1
                f = None
            elif f.kind == "truncate":
                if len(frames) == 1:  # Falcon Output: the table cut in half
                    frames = [frames[0][: len(frames[0]) // 2]]
                else:
                    frames = [frames[0], frames[1], frames[2][: len(frames[2]) // 2]]
            elif f.kind == "corrupt":
                if len(frames) == 1:  # Falcon Output: the root offset points outside the buffer
                    frames = [b"\xff\xff\xff\x7f" + frames[0][4:]]
                else:
                    frames = [frames[0], b"{ this is not JSON", frames[2]]
            elif f.kind == "reorder":
                pending.append(frames)  # sent after the next message
                return
            elif f.kind == "duplicate":
                pub.send_multipart(frames)
                self.stats.messages_sent += 1
        pub.send_multipart(frames)
        self.stats.messages_sent += 1
        while pending and f is None:
            pub.send_multipart(pending.pop())
            self.stats.messages_sent += 1

    def _stray(self, frames: list[bytes], what: str) -> list[bytes]:
        """A copy of ``frames`` (a DATA or EVENT message) with one thing wrong (see ``stray=K:WHAT``)."""
        if len(frames) == 1:
            return [self._falcon_stray(frames[0], what)]
        header = json.loads(frames[1])
        content = header["content"]
        if what == "channel":
            content["channel_num"] = self.channels[-1] + 1
        elif what == "rate":
            content["sample_rate"] = 25000.0
        elif what == "stream":
            content["stream"] = "Stranger-AP"
        elif what == "sample":
            content["sample_num"] = int(content["sample_num"]) + 10**12
        elif what == "stranger":
            header["message_num"] = 1
        elif what == "twin":  # K's number and samples, claiming another of the stream's channels
            others = [c for c in self.channels if c != content.get("channel_num")]
            content["channel_num"] = others[len(others) // 2]
        elif what == "huge":  # 1 M samples in one message
            content["num_samples"] = 1 << 20
            header["data_size"] = 4 << 20
            return [frames[0], json.dumps(header).encode(), np.zeros(1 << 20, "<f4").tobytes()]
        if header.get("type") != "data":  # strays are data messages: reuse a data header shape
            content.update(channel_num=0, num_samples=1, sample_rate=self.source.sample_rate)
            header["data_size"] = 4
            return [b"DATA\x00", json.dumps(header).encode(), np.zeros(1, "<f4").tobytes()]
        return [frames[0], json.dumps(header).encode(), frames[2]]

    def _falcon_stray(self, frame: bytes, what: str) -> bytes:
        """A copy of one Falcon Output block with one thing wrong."""
        m = parse_continuous_data(frame)
        samples, codes = np.array(m.samples), np.array(m.event_codes)
        fields = dict(stream=m.stream, sample_num=m.sample_num, message_id=m.message_id, sample_rate=m.sample_rate)
        if what == "channel":
            samples = np.vstack([samples, samples[:1]])  # one channel more than the rig's
        elif what == "rate":
            fields["sample_rate"] = 25000
        elif what == "stream":
            fields["stream"] = "Stranger-AP"
        elif what == "sample":
            fields["sample_num"] = m.sample_num + 10**12
        elif what == "stranger":
            fields["message_id"] = 1
        elif what == "id":
            fields["message_id"] = 10**6
        elif what == "huge":
            samples = np.zeros((samples.shape[0], 1 << 17), np.float32)
            codes = np.zeros(1 << 17, np.uint16)
        return serialise_continuous_data(samples, codes, **fields)

    def _send_rendered(self, pub, rendered: _Rendered) -> None:
        """Send pre-rendered messages block by block, paced as ``_replay_once`` paces."""
        rate = self.source.sample_rate * (self.speed or 0)
        t0 = time.monotonic()
        ends = [start for _, start in rendered.block_starts[1:]] + [len(rendered.frames)]
        sample_ends = [i for i, _ in rendered.block_starts[1:]] + [rendered.n_samples]
        for (i0, a), b, i1 in zip(rendered.block_starts, ends, sample_ends, strict=True):
            if self._stop.is_set():
                return
            if rate:
                delay = t0 + i0 / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            for frames in rendered.frames[a:b]:
                pub.send_multipart(frames)
                self.stats.ttl_events += frames[0] == EVENT_ENVELOPE
            self.stats.messages_sent += b - a
            self.stats.blocks += 1
            self.stats.samples += i1 - i0

    def _block_start(self, pub, t0: float, i0: int) -> None:
        """Mark where a block starts (preloading) or wait until it is due (paced replay)."""
        if isinstance(pub, _Rendered):
            pub.block_starts.append((i0, len(pub.frames)))
        elif self.speed:
            delay = t0 + i0 / (self.source.sample_rate * self.speed) - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def _replay_once(self, pub) -> None:
        if self.protocol == FALCON_OUTPUT:
            self._replay_once_falcon(pub)
            return
        src = self.source
        t0 = time.monotonic()
        count = 0  # messages of this pass (faults count them)
        message_num = self._numbers  # the plugin's message_num: a loop goes on counting
        sample_offset = self.origin
        word = 0
        pending: list = []
        names = src.channel_names
        framer = BlockFramer(self.stream_name, src.sample_rate)
        for i0, i1, ttl_i, j in src.blocks(self.block_samples, self.seed, self.variable_blocks):
            if self._stop.is_set():
                return
            n = i1 - i0
            self._block_start(pub, t0, i0)
            block = np.ascontiguousarray(src.block_uv(i0, i1).T, "<f4")
            ts = int(time.time() * 1000)
            n_messages = (j - ttl_i) + len(self.channels)
            # An injected restart takes effect at the start of the block that holds its message count: a
            # stop and start of acquisition as the GUI does it -- message_num from 1, sample_num going on.
            hits = [
                self.faults[c]
                for c in range(count + 1, count + n_messages + 1)
                if c in self.faults and self.faults[c].kind == "restart"
            ]
            if hits:
                self.stats.faults_applied["restart"] = self.stats.faults_applied.get("restart", 0) + 1
                message_num = 0
            first = int(src.sample_numbers[i0]) - sample_offset
            for k in range(ttl_i, j):
                count += 1
                message_num += 1
                line, state = int(src.ttl_lines[k]), int(src.ttl_states[k])
                word = (word | (1 << line)) if state else (word & ~(1 << line))
                frames = ttl_frames(
                    message_num,
                    self.stream_name,
                    src.source_node,
                    int(src.ttl_samples[k]) - sample_offset,
                    line,
                    state,
                    word,
                    ts,
                )
                self.stats.ttl_events += 1
                self._send(pub, frames, count, pending)
            for c in self.channels:  # the plugin sends only the channels selected in its mask
                count += 1
                message_num += 1
                frames = framer.frames(
                    message_num, c, block[c].tobytes(), int(n), first, ts, names[c] if self.send_channel_names else None
                )
                self._send(pub, frames, count, pending)
            self._numbers = message_num
            self.stats.blocks += 1
            self.stats.samples += int(n)

    def _replay_once_falcon(self, pub) -> None:
        """One pass as Falcon Output: one message per block, TTL lines as bits of ``event_codes``."""
        src = self.source
        t0 = time.monotonic()
        message_id = self._numbers  # a loop goes on counting
        sample_offset = self.origin
        word = 0
        pending: list = []
        builder = None
        rows = np.asarray(self.channels)
        for count, (i0, i1, ttl_i, j) in enumerate(
            src.blocks(self.block_samples, self.seed, self.variable_blocks), start=1
        ):
            if self._stop.is_set():
                return
            n = i1 - i0
            self._block_start(pub, t0, i0)
            f = self.faults.get(count)
            if f is not None and f.kind == "restart":
                self.stats.faults_applied["restart"] = self.stats.faults_applied.get("restart", 0) + 1
                message_id = 0  # a stop and start: message_id from 1, sample_num going on
                word = 0  # the plugin clears its word when acquisition starts
            first = int(src.sample_numbers[i0])
            codes = np.full(n, word, np.uint16)
            for k in range(ttl_i, j):  # a block's few TTL events, in order
                line = int(src.ttl_lines[k])
                if line >= FALCON_TTL_LINES:
                    continue  # the plugin carries lines 0..15 only
                word = (word | (1 << line)) if int(src.ttl_states[k]) else (word & ~(1 << line))
                codes[max(0, int(src.ttl_samples[k]) - first) :] = word
                self.stats.ttl_events += 1
            message_id += 1
            block = src.block_uv(i0, i1).T  # (channels, samples): channel-major, as the plugin flattens
            builder = builder or flatbuffers.Builder(1 << 20)
            buf = serialise_continuous_data(
                block[rows],
                codes,
                self.stream_name,
                first - sample_offset,
                message_id,
                src.sample_rate,
                time.monotonic(),
                builder,
            )
            self._send(pub, [buf], count, pending)
            self._numbers = message_id
            self.stats.blocks += 1
            self.stats.samples += int(n)
