"""The replayer publishes what the GUI's ZMQ Interface plugin would, byte for byte."""

import json
import re
import threading

import numpy as np
import pandas as pd
import pytest
import zmq
from rtdecode.replay.replayer import Fault, Replayer

from rtdecode.stream.recording import RecordingSource, block_sizes

from .conftest import free_port_pair, manifest


def _collect(replayer, port, n):
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{port}")
    req = ctx.socket(zmq.REQ)
    req.connect(f"tcp://127.0.0.1:{port + 1}")
    monitor = sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    th = threading.Thread(target=replayer.run)
    th.start()
    # the replayer drops what no subscriber takes, like the GUI: heartbeat (which starts it) only once connected
    assert monitor.poll(5000), "the subscriber never connected to the replayer"
    monitor.recv_multipart()  # the handshake event; the monitor is torn down once all is quiet (below)
    # the subscription travels right after the handshake; the replayer waits 0.2 s after a heartbeat
    req.send(json.dumps({"application": "test", "uuid": "1", "type": "heartbeat"}).encode())
    assert req.poll(5000)
    reply = req.recv()
    out = []
    while len(out) < n and sub.poll(5000):
        out.append(sub.recv_multipart())
    replayer.stop()
    th.join()
    # libzmq can abort when a monitor is torn down while its socket still emits events
    # (zeromq/libzmq#2083): unregister it only after the publisher is gone, then close
    sub.disable_monitor()
    monitor.close()
    sub.close()
    req.close()
    return reply, out


def test_replayer_is_byte_exact_and_payloads_equal_the_recording(small_animal):
    from open_ephys.analysis import Session

    m = manifest(small_animal)
    port = free_port_pair()
    # lossless: this test is about what is sent, not the plugin's drops when a (loaded) subscriber lags
    r = Replayer(small_animal / "recording", port, speed=None, block_samples=500, wait_for_heartbeat_s=5, send_hwm=0)
    first_onset = int(pd.read_csv(small_animal / m["stimulus_log"]).onset_sample.min())
    onset_block = (first_onset - m["first_sample_number"]) // 500
    reply, msgs = _collect(r, port, 16 * max(40, onset_block + 2) + 20)  # far enough to hold the first onset
    assert reply == b"heartbeat received"
    oe = Session(str(small_animal / "recording")).recordnodes[0].recordings[0]
    uv = oe.continuous[0].get_samples(0, 40 * 500)
    names = oe.continuous[0].metadata.channel_names
    stream = RecordingSource(small_animal / "recording").file_reader_stream_name  # as the GUI's File Reader names it
    assert stream.endswith(".ProbeA-AP")
    first = m["first_sample_number"]
    data = [x for x in msgs if x[0] == b"DATA\x00"]
    for k, (_env, header, payload) in enumerate(data[: 16 * 40]):
        block, ch = divmod(k, 16)
        ts = re.search(rb'"timestamp": (\d+)', header).group(1).decode()
        num = json.loads(header)["message_num"]
        expected = (
            "{\r\n"
            f'  "message_num": {num},\r\n'
            '  "type": "data",\r\n'
            '  "content": {\r\n'
            f'    "stream": "{stream}",\r\n'
            f'    "channel_num": {ch},\r\n'
            f'    "channel_name": "{names[ch]}",\r\n'  # current plugin builds always send it
            '    "num_samples": 500,\r\n'
            f'    "sample_num": {first + 500 * block},\r\n'
            '    "sample_rate": 30000.0\r\n'
            "  },\r\n"
            '  "data_size": 2000,\r\n'
            f'  "timestamp": {ts}\r\n'
            "}"
        ).encode()
        assert header == expected
        np.testing.assert_allclose(
            np.frombuffer(payload, "<f4"),
            uv[500 * block : 500 * (block + 1), ch].astype(np.float32),
            rtol=1e-6,
            atol=1e-4,
        )
    nums = [json.loads(x[1])["message_num"] for x in msgs]
    assert nums == list(range(1, len(msgs) + 1))  # message_num from 1, every message counted
    ttl = [x for x in msgs if x[0] == b"EVENT\x00"]
    assert ttl, f"no TTL event in the first {onset_block + 2} blocks, though the first onset is in block {onset_block}"
    assert ttl[0][2][:2] == bytes([m["ttl_line"], 1])  # 0-based line on the wire, rising
    assert json.loads(ttl[0][1])["content"]["sample_num"] == first_onset


def test_ttl_events_come_before_their_blocks_data(small_animal):
    port = free_port_pair()
    r = Replayer(small_animal / "recording", port, speed=None, wait_for_heartbeat_s=5, send_hwm=0)
    _, msgs = _collect(r, port, 16 * 600)
    for i, x in enumerate(msgs):
        if x[0] == b"EVENT\x00":
            sn = json.loads(x[1])["content"]["sample_num"]
            nxt = json.loads(msgs[i + 1][1])["content"]
            if msgs[i + 1][0] == b"DATA\x00":
                assert nxt["channel_num"] == 0 and nxt["sample_num"] <= sn < nxt["sample_num"] + nxt["num_samples"]


def test_block_sizes_and_fault_parsing():
    sizes = block_sizes(300_000, 30000.0, None, seed=1, variable=True)
    assert sizes.sum() == 300_000 and 500 < sizes.mean() < 900 and sizes.std() > 10
    gui = block_sizes(300_000, 30000.0, None)
    assert (gui[:-1] == 696).all() and gui.sum() == 300_000  # the real GUI's block at 30 kHz
    assert (block_sizes(1000, 30000.0, 300) == [300, 300, 300, 100]).all()
    assert Fault.parse("stall=10:0.5") == Fault("stall", 10, 0.5)
    for bad in ("drop", "explode=3", "drop=x", "stall=4", "drop=0"):
        with pytest.raises(ValueError):
            Fault.parse(bad)


def test_preloaded_replay_sends_the_same_messages(small_animal):
    """--preload renders first and then only sends: same frames (timestamps are render time)."""
    runs = []
    for preload in (False, True):
        port = free_port_pair()
        r = Replayer(
            small_animal / "recording",
            port,
            speed=None,
            block_samples=500,
            wait_for_heartbeat_s=5,
            preload=preload,
            send_hwm=0,
        )
        _, msgs = _collect(r, port, 16 * 30)
        runs.append([[f[0], re.sub(rb'"timestamp": \d+', b"", f[1]), f[2]] for f in msgs])
    assert len(runs[0]) == len(runs[1]) == 16 * 30 and runs[0] == runs[1]
    with pytest.raises(ValueError, match="cannot inject faults"):
        Replayer(small_animal / "recording", free_port_pair(), preload=True, faults=[Fault.parse("drop=3")])
