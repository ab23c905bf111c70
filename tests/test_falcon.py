"""Falcon Output as a second input protocol: the wire format both ways, continuity and TTL edges,
and the whole daemon served by a replayer that publishes as the plugin does."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rtdecode.offline.bench.session import replay_through_daemon
from rtdecode.replay.replayer import Fault

from rtdecode.stream.falcon import parse_continuous_data, serialise_continuous_data
from rtdecode.stream.falcon_assembler import FalconAssembler
from rtdecode.stream.protocol import ProtocolError

from .test_online import rig
from .test_reliability import FS, ONSETS
from .waiting import wait_settled


@pytest.fixture(scope="module")
def pulsed_recording(tmp_path_factory):
    """6 s of 16-channel noise, a 10 ms TTL pulse at every onset (Falcon Output carries levels: an
    onset is a rising bit, so a line must fall between onsets, as a rig's pulses do)."""
    from rtdecode.offline.sim.openephys_writer import BinaryRecordingWriter

    path = tmp_path_factory.mktemp("pulsed") / "rec"
    rng = np.random.default_rng(5)
    w = BinaryRecordingWriter(path, FS, 16)
    w.append(rng.normal(0, 7, (int(6 * FS), 16)))
    times = np.concatenate([ONSETS, ONSETS + int(0.01 * FS)])
    states = np.concatenate([np.ones(len(ONSETS), int), np.zeros(len(ONSETS), int)])
    order = np.argsort(times, kind="stable")
    w.add_ttl(times[order], 0, states[order])
    w.close()
    return path


def _msg(n_ch=4, n=10, sample=0, mid=1, codes=None, stream="ProbeA-AP", rate=30000):
    x = np.arange(n_ch * n, dtype=np.float32).reshape(n_ch, n)
    c = np.zeros(n, np.uint16) if codes is None else np.asarray(codes, np.uint16)
    return x, c, serialise_continuous_data(x, c, stream, sample, mid, rate, 12.5)


def test_a_message_reads_back_field_for_field_with_the_vectors_in_place():
    x, c, buf = _msg(codes=[0, 0, 1, 1, 3, 3, 2, 2, 0, 0])
    m = parse_continuous_data(buf)
    assert (m.stream, m.n_channels, m.n_samples, m.sample_num, m.message_id, m.sample_rate, m.timestamp) == (
        "ProbeA-AP",
        4,
        10,
        0,
        1,
        30000,
        12.5,
    )
    assert np.array_equal(m.samples, x) and np.array_equal(m.event_codes, c)
    assert not m.samples.flags.owndata  # a view of the message buffer


@pytest.mark.parametrize(
    ("cut", "expect"),
    [
        (lambda b: b"", "too short"),
        (lambda b: b[: len(b) // 2], "not a Falcon Output ContinuousData table"),
        (lambda b: b"\xff\xff\xff\x7f" + b[4:], "not a Falcon Output ContinuousData table"),
    ],
)
def test_a_damaged_message_is_a_protocol_error_naming_it(cut, expect):
    with pytest.raises(ProtocolError, match=expect):
        parse_continuous_data(cut(_msg()[2]))


def test_samples_that_disagree_with_the_declared_shape_are_refused():
    x = np.zeros((4, 10), np.float32)
    buf = serialise_continuous_data(x, np.zeros(10, np.uint16), "s", 0, 1, 30000)
    # rewrite n_samples (uint32 slot 4) through a rebuilt message with a lying header
    import flatbuffers

    b = flatbuffers.Builder(0)
    v = b.CreateNumpyVector(x.reshape(-1))
    b.StartObject(9)
    b.PrependUOffsetTRelativeSlot(0, v, 0)
    b.PrependUint32Slot(3, 4, 0)
    b.PrependUint32Slot(4, 11, 0)
    b.PrependUint64Slot(7, 1, 0)
    b.Finish(b.EndObject())
    with pytest.raises(ProtocolError, match=r"40 values, expected n_channels x n_samples = 4 x 11"):
        parse_continuous_data(bytes(b.Output()))
    assert parse_continuous_data(buf).n_samples == 10


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_the_parser_never_raises_anything_but_protocol_error(data):
    try:
        parse_continuous_data(data)
    except ProtocolError:
        pass


def test_ttl_edges_come_from_changing_bits_across_blocks():
    a = FalconAssembler(4, "ProbeA-AP", 30000.0)
    _, _, b1 = _msg(sample=100, mid=1, codes=[0, 0, 1, 1, 1, 5, 5, 5, 5, 5])
    _, _, b2 = _msg(sample=110, mid=2, codes=[5, 4, 4, 4, 4, 4, 4, 4, 4, 0])
    block, ttls, anomalies = a.on_message(parse_continuous_data(b1), 0)
    assert anomalies == [] and block.sample_num == 100 and block.data.shape == (10, 4)
    assert ttls == [(0, 1, 102), (2, 1, 105)]
    _, ttls, _ = a.on_message(parse_continuous_data(b2), 0)
    assert ttls == [(0, 0, 111), (2, 0, 119)]  # the word before a block is the last of the previous one


def test_lost_duplicate_restarted_and_foreign_blocks_are_named():
    a = FalconAssembler(4, "ProbeA-AP", 30000.0)

    def feed(**kw):
        return a.on_message(parse_continuous_data(_msg(**kw)[2]), 0)

    feed(sample=0, mid=1)
    block, _, an = feed(sample=30, mid=4)  # blocks 2 and 3 lost
    assert block is not None and [(x.kind, x.start_sample, x.end_sample) for x in an] == [("message_gap", 10, 31)]
    assert a.counters["lost_messages"] == 2 and a.counters["sample_gaps"] == 0
    block, _, an = feed(sample=30, mid=4)
    assert block is None and [x.kind for x in an] == ["duplicate"]
    for kw, kind in (
        ({"stream": "Other"}, "wrong_stream"),
        ({"rate": 25000}, "wrong_sample_rate"),
        ({"n_ch": 5}, "wrong_channel_count"),
    ):
        block, _, an = feed(sample=40, mid=5, **kw)
        assert block is None and [x.kind for x in an] == [kind]
    assert a.last_message_num == 4  # refused messages touch no continuity
    block, _, an = feed(sample=0, mid=1)
    assert block is not None and [x.kind for x in an] == ["restart"]


def _serve(bundle, recording, tmp_path, protocol, faults=()):
    cfg = rig(16, tmp_path, protocol=protocol, heartbeat_port=None)
    res = replay_through_daemon(bundle, recording, cfg, tmp_path / f"{protocol}.jsonl", speed=2.0, faults=list(faults))
    return res


def test_falcon_output_decides_what_the_zmq_interface_decides(bundle, pulsed_recording, tmp_path):
    zmq_res = _serve(bundle, pulsed_recording, tmp_path, "zmq-interface")
    falcon = _serve(bundle, pulsed_recording, tmp_path, "falcon-output")
    c = falcon.status["counters"]
    assert falcon.status["state"] == "stopped" and c["malformed"] == 0 and c["internal_errors"] == 0
    assert c["messages"] == c["blocks"] == falcon.replay.blocks  # one message per block
    assert zmq_res.status["counters"]["messages"] == zmq_res.replay.blocks * 16 + 2 * len(ONSETS)
    key = [(d["onset_sample"], d["status"], d["predicted_class"]) for d in zmq_res.decisions]
    assert [(d["onset_sample"], d["status"], d["predicted_class"]) for d in falcon.decisions] == key
    assert len(key) == len(ONSETS) and all(s == "ok" for _, s, _ in key)
    for a, b in zip(zmq_res.decisions, falcon.decisions, strict=True):
        for k, p in a["probabilities"].items():
            assert abs(p - b["probabilities"][k]) < 1e-6


def test_a_lost_and_a_damaged_falcon_block_degrade_only_their_trials(bundle, pulsed_recording, tmp_path):
    res = _serve(
        bundle, pulsed_recording, tmp_path, "falcon-output", [Fault.parse("drop=40"), Fault.parse("corrupt=120")]
    )
    c = res.status["counters"]
    assert res.replay.faults_applied == {"drop": 1, "corrupt": 1}
    # the dropped block and the unreadable one are both gaps in message_id
    assert c["lost_messages"] == 2 and c["message_gaps"] == 2 and c["malformed"] == 1 and c["internal_errors"] == 0
    onsets = [d["onset_sample"] for d in res.decisions]
    assert sorted(onsets) == sorted(set(onsets)) and len(onsets) == len(ONSETS)
    degraded = [d for d in res.decisions if d["status"] != "ok"]
    assert 1 <= len(degraded) <= 4 and c["degraded"] == len(degraded)  # only trials overlapping the two blocks


@pytest.mark.parametrize(
    ("what", "counter"),
    [
        ("id", "strays"),  # message_id 10^6: once counted 999,000 lost and dropped every later block as a duplicate
        ("sample", "strays"),  # the next message_id with an absurd sample_num: once a real block lost and a restart
        ("stranger", "strays"),  # another publisher's message_id 1 mid-run
        ("channel", "wrong_channel_count"),
        ("rate", "wrong_sample_rate"),
        ("stream", "wrong_stream"),
        ("huge", "oversized"),
    ],
)
def test_one_stray_falcon_message_degrades_nothing(bundle, pulsed_recording, tmp_path, what, counter):
    res = _serve(bundle, pulsed_recording, tmp_path, "falcon-output", [Fault.parse(f"stray=60:{what}")])
    c = res.status["counters"]
    assert res.replay.faults_applied == {"stray": 1}
    assert c[counter] == 1 and c["restarts"] == 0 and c["lost_messages"] == 0 and c["duplicates"] == 0
    assert c["blocks"] == res.replay.blocks  # every real block taken
    assert res.status["state"] == "stopped" and res.status["stream_unfit"] is None
    assert [(d["onset_sample"], d["status"]) for d in res.decisions] == [(int(o), "ok") for o in ONSETS]
    stop = json.loads(res.log_path.read_text().splitlines()[-1])
    assert stop["event"] == "stop" and stop["onsets"]["undecided"] == 0


@pytest.mark.parametrize("lossless", [False, True])
def test_a_full_ring_drops_and_degrades_on_a_rig_and_waits_when_lossless(bundle, pulsed_recording, tmp_path, lossless):
    """Falcon flat out into a 2-block ring: the worker cannot keep up. On a rig the receiver refuses
    blocks (overruns, their trials degraded, every onset still decided once); lossless, it waits."""
    import json
    import threading
    import time

    from rtdecode.replay.replayer import Replayer

    from rtdecode.daemon import Daemon

    cfg = rig(16, tmp_path, protocol="falcon-output", heartbeat_port=None)
    log = tmp_path / "d.jsonl"
    d = Daemon(cfg, bundle, log, ring_slots=2, log=lambda *_: None, lossless=lossless)
    d.start()
    rep = Replayer(
        pulsed_recording,
        cfg.stream.data_port,
        speed=None,
        preload=True,
        send_hwm=0,
        protocol="falcon-output",
        wait_for_heartbeat_s=10,
    )
    th = threading.Thread(target=rep.run)
    th.start()
    th.join()
    deadline = time.monotonic() + 60
    while d.pipeline.samples_processed + 0 < rep.stats.samples and time.monotonic() < deadline:
        if not lossless and d.receiver_totals.samples_received >= rep.stats.samples and d.receiver.ring.fill == 0:
            break
        time.sleep(0.1)
    wait_settled(d)
    d.stop()
    d.wait()
    records = [json.loads(x) for x in log.read_text().splitlines()]
    stop = records[-1]
    c = stop["status"]["counters"]
    decisions = [r for r in records if "seq" in r]
    assert stop["onsets"]["undecided"] == 0 and len(decisions) == stop["onsets"]["seen"]
    assert stop["stream_s"]["received"] == rep.stats.samples / FS
    if lossless:
        assert c["overruns"] == 0 and stop["stream_s"]["processed"] == stop["stream_s"]["received"]
        assert len(decisions) == len(ONSETS) and all(r["status"] == "ok" for r in decisions)
    else:
        assert c["overruns"] > 0 and stop["stream_s"]["processed"] < stop["stream_s"]["received"]
        parts = {p for r in decisions if r["status"] != "ok" for p in r["reasons"]}
        assert all(r["status"] == "degraded: " + "; ".join(r["reasons"]) for r in decisions if r["status"] != "ok")
        print("degraded reasons:", parts)
        assert "ring overrun" in parts
        # the refused blocks (the sorter's gap after them is the same hole: one reason), or the last trials
        # never seen whole at stop
        assert parts <= {"ring overrun", "shutdown"}


@pytest.mark.parametrize(
    ("configured", "sent", "taken"),
    [
        (30000.0, 30000, True),
        (30000.0, 29999, False),  # a 29,999.x Hz stream is not the configured 30 kHz one
        (29999.9, 29999, True),  # Falcon Output sends (int) sampleRate: 29,999.9 Hz arrives as 29,999
        (29999.9, 30000, False),
        (2500.0, 2500, True),
    ],
)
def test_falcon_sample_rates_are_compared_truncated_as_the_plugin_sends_them(configured, sent, taken):
    from rtdecode.stream.continuity import rates_agree

    a = FalconAssembler(4, "ProbeA-AP", configured)
    block, _, an = a.on_message(parse_continuous_data(_msg(rate=sent)[2]), 0)
    assert (block is not None) == taken and [x.kind for x in an] == ([] if taken else ["wrong_sample_rate"])
    assert rates_agree(float(sent), configured, truncated=True) == taken
    assert rates_agree(configured, configured) and not rates_agree(29999.9, 30000.0)  # the ZMQ Interface: float32
