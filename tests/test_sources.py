"""The stream-source registry: a protocol registered outside the library runs end to end."""

import json
import time

import numpy as np
import pytest
import zmq

from rtdecode.daemon import Daemon
from rtdecode.stream import sources
from tests.test_online import rig
from tests.test_reliability import ONSETS, wait_for_onsets

FS = 30000.0


def test_the_built_in_sources_come_first_whatever_order_they_were_imported_in():
    names = sources.names()
    assert names[:2] == ["zmq-interface", "falcon-output"] and sources.default().name == "zmq-interface"
    assert sources.get("zmq-interface").heartbeat and not sources.get("falcon-output").heartbeat
    with pytest.raises(ValueError, match=r"unknown stream protocol 'lsl'; known: 'zmq-interface', 'falcon-output'"):
        sources.get("lsl")


def test_a_protocol_registered_outside_the_library_runs_receiver_to_decision(bundle, tmp_path):
    """tests/raw_block_source.py registers a protocol of its own; the rig config names it, and the
    daemon's receiver process (which imports the registering module) decides every onset."""
    from tests import raw_block_source as raw

    assert raw.NAME in sources.names() and sources.get(raw.NAME).module == "tests.raw_block_source"
    cfg = rig(16, tmp_path, protocol=raw.NAME)
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.bind(f"tcp://127.0.0.1:{cfg.stream.data_port}")
    monitor = pub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    log = tmp_path / "d.jsonl"
    d = Daemon(cfg, bundle, log, log=lambda *_: None)
    d.start()
    try:
        assert monitor.poll(20000), "the receiver never connected"
        rng = np.random.default_rng(5)
        codes = np.zeros(int(6 * FS), np.uint16)
        for onset in ONSETS:
            codes[onset : onset + 300] = 1  # line 0 high for 10 ms at each onset
        block = 1000
        for k, first in enumerate(range(0, len(codes), block)):
            data = rng.normal(0, 7, (block, 16))
            pub.send_multipart(raw.frames_of(data, codes[first : first + block], "ProbeA-AP", first, k + 1, FS))
            time.sleep(block / FS / 8)  # the stream's pace, 8x real time
        wait_for_onsets(d, len(ONSETS))
        deadline = time.monotonic() + 30
        while d.counters["decisions"] < len(ONSETS) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        d.stop()
        d.wait()
        pub.disable_monitor()
        monitor.close()
        pub.close()
    records = [json.loads(x) for x in log.read_text().splitlines()]
    decided = [r for r in records if "seq" in r]
    assert [r["onset_sample"] for r in decided] == [int(o) for o in ONSETS]
    assert {r["status"] for r in decided} == {"ok"}
    stop = records[-1]
    assert stop["gaps"]["count"] == 0
    assert stop["stream_s"]["received"] == stop["stream_s"]["processed"] == pytest.approx(6.0)
