"""What it costs to receive a stream: the receiver process's CPU per second of stream, per protocol.

The same synthetic recording is replayed flat out and lossless (preloaded, so the replayer only
sends) once as the ZMQ Interface plugin and once as Falcon Output, into the daemon's own
:class:`~rtdecode.stream.receiver_process.ReceiverProcess`. A consumer thread here takes every
block from the ring and releases it at once, so the receiver is never held up by sorting. The
receiver reports its own CPU time (``time.process_time`` in that process); dividing by the stream
seconds it delivered gives the receiver's cost, and the two protocols are compared side by side
in one run.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq
from rtdecode.replay.replayer import PROTOCOLS

from rtdecode.config import StreamConfig
from rtdecode.stream.items import ReceiverCounters, RingBlockItem
from rtdecode.stream.receiver_process import ReceiverProcess

FS = 30000.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def receive_once(recording: Path, n_channels: int, protocol: str, log=print) -> dict:
    from rtdecode.replay.replayer import Replayer

    port = _free_port()
    cfg = StreamConfig(
        protocol=protocol,
        data_port=port,
        stream_name="ProbeA-AP",
        channel_count=n_channels,
        sample_rate=FS,
    )
    ctx = zmq.Context()
    rp = ReceiverProcess(cfg, ctx, f"{int(time.time() * 1e6) & 0xFFFFFFFF:08x}", slots=512, log=log)
    rp.start()
    rp.wait_ready()
    last = ReceiverCounters({}, 0, None, 0.0)
    blocks = 0
    done = threading.Event()

    def consume() -> None:
        nonlocal last, blocks
        while True:
            ev = rp.poll(100)
            if isinstance(ev, RingBlockItem):
                rp.ring.release(ev.seq)
                blocks += 1
            elif isinstance(ev, ReceiverCounters):
                last = ev
                if ev.final:
                    return
            elif ev is None and done.is_set() and not rp.alive:
                return

    th = threading.Thread(target=consume)
    th.start()
    replayer = Replayer(
        recording, port, speed=None, preload=True, send_hwm=0, protocol=protocol, wait_for_heartbeat_s=10
    )
    if cfg.source.heartbeat:
        # the daemon's heartbeat thread is not here: answer the replayer's wait with one heartbeat
        threading.Thread(target=_one_heartbeat, args=(ctx, port + 1), daemon=True).start()
    t0 = time.monotonic()
    stats = replayer.run()
    # wait until the receiver has delivered the whole stream (it drains after the replayer is done)
    deadline = time.monotonic() + 120
    while last.samples_received < stats.samples and time.monotonic() < deadline:
        time.sleep(0.05)
    wall = time.monotonic() - t0
    done.set()
    rp.terminate()
    th.join(30)
    rp.close()
    ctx.term()
    stream_s = last.samples_received / FS
    c = last.counters
    return {
        "protocol": protocol,
        "channels": n_channels,
        "messages": c.get("messages", 0),
        "blocks": blocks,
        "stream_s": stream_s,
        "receiver_cpu_s": last.cpu_s,
        "receiver_cpu_ms_per_stream_s": 1e3 * last.cpu_s / stream_s if stream_s else None,
        "wall_s": wall,
        "lost_messages": c.get("lost_messages", 0),
        "malformed": c.get("malformed", 0),
        "complete": last.samples_received == stats.samples,
    }


def _one_heartbeat(ctx: zmq.Context, port: int) -> None:
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(f"tcp://127.0.0.1:{port}")
    s.send(b'{"application": "rtdecode-bench", "type": "heartbeat"}')
    s.poll(10000)
    s.close()


def run_receiver_bench(n_channels: int, duration_s: float, seed: int = 0, log=print) -> dict:
    from rtdecode.offline.bench.offline_bench import machine
    from rtdecode.offline.bench.online_bench import synthetic_stream, write_recording

    stream = synthetic_stream(n_channels, duration_s, seed=seed)
    onsets = np.arange(int(1.0 * FS), len(stream.traces) - int(0.5 * FS), int(0.25 * FS))
    rows = []
    with tempfile.TemporaryDirectory(prefix="rtdecode-rxbench-") as tmp:
        rec = write_recording(stream, Path(tmp) / "recording", onsets, 0, 90_000)
        for protocol in PROTOCOLS:
            log(f"receiver: {n_channels} ch x {duration_s:g} s as {protocol}, flat out, lossless ...")
            rows.append(receive_once(rec, n_channels, protocol, log))
    z, f = rows
    ratio = (
        z["receiver_cpu_ms_per_stream_s"] / f["receiver_cpu_ms_per_stream_s"]
        if z["receiver_cpu_ms_per_stream_s"] and f["receiver_cpu_ms_per_stream_s"]
        else None
    )
    return {
        "machine": machine(("rtdecode", "numpy", "pyzmq", "flatbuffers")),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": rows,
        "zmq_over_falcon_cpu_ratio": ratio,
    }
