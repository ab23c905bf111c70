"""Survives the rig: single bad messages, hostile control clients, stops mid-trial, restarts, bad edges.

Every daemon case runs on loopback against the real replayer and asserts survival, exactly one
decision per onset, and the counters that name what happened.
"""

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from rtdecode.offline.bench.session import replay_through_daemon
from rtdecode.offline.sim.openephys_writer import BinaryRecordingWriter
from rtdecode.replay.replayer import Fault

from rtdecode.client import DecisionClient, control_request
from rtdecode.config import parse_rig_config
from rtdecode.control import MAX_REQUEST_BYTES, parse_request
from rtdecode.daemon import Daemon
from rtdecode.errors import ConfigError
from rtdecode.stream.protocol import ProtocolError, parse_frames

from .conftest import manifest
from .test_config import VALID
from .test_online import rig
from .waiting import wait_settled, wait_until

FS = 30000.0
ONSETS = np.arange(int(0.5 * FS), int(5.5 * FS), int(0.3 * FS))  # 17 onsets, every window inside the stream


@pytest.fixture(scope="module")
def short_recording(tmp_path_factory):
    """6 s of 16-channel noise with an onset every 300 ms (fits the test bundle: 16 ch, 30 kHz, line 0)."""
    path = tmp_path_factory.mktemp("short") / "rec"
    rng = np.random.default_rng(5)
    w = BinaryRecordingWriter(path, FS, 16)
    w.append(rng.normal(0, 7, (int(6 * FS), 16)))
    w.add_ttl(ONSETS, 0, np.ones(len(ONSETS), dtype=int))
    w.close()
    return path


def assert_every_onset_accounted_for(records: list[dict], onsets, stream_s: float) -> None:
    """The log against the recording's stimulus log: every onset decided once, or missing inside a
    logged gap that says onsets in it may be missing; the stop record's totals add up."""
    decided = [r["onset_sample"] for r in records if "seq" in r]
    assert len(decided) == len(set(decided)), "an onset decided twice"
    gaps = [r for r in records if r.get("event") == "gap"]
    for onset in sorted(set(int(o) for o in onsets) - set(decided)):
        assert any(g["onsets_may_be_missing"] and g["start_sample"] <= onset < g["end_sample"] for g in gaps), (
            f"onset {onset} neither decided nor inside a logged gap: {gaps}"
        )
    stop = records[-1]
    assert stop["event"] == "stop"
    o = stop["onsets"]
    assert o["seen"] == o["decided"] == len(decided) and o["undecided"] == 0
    assert o["decided"] == o["ok"] + o["degraded"] == len(decided)
    assert o["degraded"] == len([r for r in records if "seq" in r and r["status"] != "ok"])
    s = stop["stream_s"]
    assert s["lost"] == pytest.approx(sum(g["seconds"] for g in gaps), abs=1e-5)
    assert stop["gaps"]["count"] == len(gaps)
    assert s["processed"] + s["lost"] == pytest.approx(stream_s, abs=1e-5)  # every sample seen or in a gap


def wait_for_onsets(daemon, n: int, timeout_s: float = 30.0) -> None:
    """Until the daemon has seen ``n`` stimulus onsets (a replay is feeding it), or the timeout."""
    deadline = time.monotonic() + timeout_s
    while daemon.pipeline.counters()["onsets"] < n and time.monotonic() < deadline:
        time.sleep(0.02)


def _serve(bundle, recording, tmp_path, faults=(), speed=2.0):
    cfg = rig(16, tmp_path)
    res = replay_through_daemon(bundle, recording, cfg, tmp_path / "d.jsonl", speed=speed, faults=list(faults))
    return res, [json.loads(x) for x in res.log_path.read_text().splitlines()]


def _assert_every_onset_decided_once(res, log):
    onsets = sorted(d["onset_sample"] for d in res.decisions)
    assert onsets == sorted(set(onsets)) and len(onsets) == res.status["counters"]["onsets"]
    stop = log[-1]
    assert stop["event"] == "stop" and stop["onsets"]["undecided"] == 0
    assert stop["onsets"]["seen"] == stop["onsets"]["decided"] == len(res.decisions)
    assert stop["stream_s"]["received"] == stop["stream_s"]["processed"]


@pytest.mark.parametrize(
    ("fault", "counter"),
    [
        ("drop=3", "lost_messages"),  # one channel of the very first block
        ("stray=5:channel", "wrong_channel_count"),  # channel 16 of a 16-channel rig, before any block
        ("stray=5:rate", "wrong_sample_rate"),
        ("stray=5:stream", "wrong_stream"),
        ("stray=3000:sample", "strays"),  # mid-run, an absurd sample_num with the stream's own number
        ("stray=3000:stranger", "strays"),  # mid-run, another publisher's message_num 1
        ("stray=3000:twin", "strays"),  # mid-run, the next message_num for another channel: the real one wins
    ],
)
def test_no_single_message_stops_the_daemon_or_poisons_later_trials(bundle, short_recording, tmp_path, fault, counter):
    res, log = _serve(bundle, short_recording, tmp_path, [Fault.parse(fault)])
    st_, c = res.status, res.status["counters"]
    print(fault, {k: c[k] for k in ("blocks", "strays", "lost_messages", "restarts", "degraded", counter)})
    assert st_["state"] == "stopped" and st_["failure"] is None and st_["stream_unfit"] is None
    assert res.replay.faults_applied == {fault.split("=")[0]: 1}
    assert c[counter] == 1 and c["restarts"] == 0
    _assert_every_onset_decided_once(res, log)
    assert len(res.decisions) == len(ONSETS)
    assert [d["status"] for d in res.decisions] == ["ok"] * len(ONSETS)  # nothing degraded for one bad message


def test_stop_mid_trial_decides_every_open_onset_as_shutdown(bundle, short_recording, tmp_path):
    cfg = rig(16, tmp_path)
    d = Daemon(cfg, bundle, tmp_path / "d.jsonl", log=lambda *_: None)
    d.start()
    from rtdecode.replay.replayer import Replayer

    rep = Replayer(short_recording, cfg.stream.data_port, speed=1.0, wait_for_heartbeat_s=10)
    import threading

    th = threading.Thread(target=rep.run)
    th.start()
    deadline = time.monotonic() + 30
    while d.pipeline.counters()["onsets"] < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    d.stop()  # the third onset's window is still open
    d.wait()
    rep.stop()
    th.join()
    lines = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    decisions = [x for x in lines if "seq" in x]
    seen = lines[-1]["onsets"]["seen"]
    assert seen >= 3 and len(decisions) == seen and lines[-1]["onsets"]["undecided"] == 0
    assert decisions[-1]["status"] == "degraded: shutdown"
    assert lines[-1]["stream_s"]["received"] == lines[-1]["stream_s"]["processed"]


def test_hostile_control_clients_get_errors_and_never_kill_the_control_thread(bundle, tmp_path):
    cfg = rig(16, tmp_path)
    d = Daemon(cfg, bundle, tmp_path / "d.jsonl", log=lambda *_: None)
    d.start()
    address = f"tcp://127.0.0.1:{cfg.outputs.control_port}"
    ctx = zmq.Context.instance()

    def ask(frames, timeout_ms=3000):
        s = ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(address)
        s.send_multipart(frames)
        reply = s.recv_json() if s.poll(timeout_ms) else None
        s.close()
        return reply

    try:
        hostile = [
            [b"[" * 100_000 + b"]" * 100_000][:1],  # nesting deeper than the parser allows (and too big)
            [b'{"cmd": "status", "pad": "' + b"x" * 5000 + b'"}'],  # a 5 KiB request
            [b"[" * 2000 + b"]" * 2000],  # deep nesting under the size limit
            [b'{"cmd": "status"}', b"second frame"],
            [b"\xff\xfe\x00garbage"],
            [b"[1, 2, 3]"],
            [b'{"cmd": {"nested": true}}'],
            [b'{"cmd": "rm -rf"}'],
            [b""],
        ]
        replies = [ask(f, timeout_ms=1500) for f in hostile]
        assert all(r is not None and "expected one frame of JSON" in r["error"] for r in replies)  # every one answered
        assert "request of 200000 bytes, more than 4096" in replies[0]["error"]
        assert f"request of {len(hostile[1][0])} bytes, more than 4096" in replies[1]["error"]
        st_ = control_request(address, "status")
        assert st_["state"] in ("ready", "running") and st_["counters"]["bad_control_requests"] == len(hostile)
        assert control_request(address, "stop")["state"] == "draining"
    finally:
        d.stop()
        d.wait()
    assert d.state == "stopped"


def test_a_restarted_daemon_is_a_new_run_and_the_client_tells_them_apart(bundle, short_recording, tmp_path):
    cfg = rig(16, tmp_path)
    log = tmp_path / "d.jsonl"
    client = DecisionClient(f"tcp://127.0.0.1:{cfg.outputs.decision_port}")
    seen = []
    for _ in range(2):  # the same ports and the same log, one run after the other
        res = replay_through_daemon(bundle, short_recording, cfg, log, speed=3.0)
        assert len(res.decisions) == len(ONSETS)
        deadline = time.monotonic() + 5
        while len([x for x in seen if x["run_id"] == res.status["run_id"]]) < len(ONSETS):
            d = client.poll(200)
            if d is not None:
                seen.append(d)
            elif time.monotonic() > deadline:
                break
    client.close()
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    starts = [x for x in lines if x.get("event") == "start"]
    assert len(starts) == 2 and starts[0]["run_id"] != starts[1]["run_id"]
    for start in starts:  # seq is per run: 1..n within each
        seqs = [x["seq"] for x in lines if x.get("run_id") == start["run_id"] and "seq" in x]
        assert seqs == list(range(1, len(ONSETS) + 1))
    assert client.restarts >= 1 and client.dropped == 0


# -- edges answer in words ----------------------------------------------------------------------
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "rtdecode", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--fault", "stall=5:-1"], "stall seconds '-1' must be a number from 0 to 3600"),
        (["--fault", "stall=5:nan"], "stall seconds 'nan' must be a number from 0 to 3600"),
        (["--fault", "stray=5:cosmic"], "stray needs MESSAGE:WHAT"),
        (["--block-samples", "-5"], "--block-samples -5: expected 1 to 65536"),
        (["--speed", "nan"], "--speed 'nan': expected 1, a positive number, or max"),
        (["--speed", "-2"], "--speed '-2': expected 1, a positive number, or max"),
    ],
)
def test_replay_refuses_bad_arguments_in_words(short_recording, args, expect):
    proc = _cli("replay", str(short_recording), *args)
    assert proc.returncode == 2 and expect in proc.stderr and "Traceback" not in proc.stderr


def test_serve_edges_answer_in_words(bundle, tmp_path):

    base = rig(16, tmp_path).model_dump(mode="json")  # free ports: nothing else may hold them
    from .test_online import _toml

    cases = []
    folder_log = tmp_path / "a-folder"
    folder_log.mkdir()
    cases.append((base, ["--log", str(folder_log)], "is a folder; give a file path"))
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases.append((base, ["--log", str(a_file / "d.jsonl")], "cannot open the decision log"))
    trt = json.loads(json.dumps(base))
    trt["model"] = {"backend": "tensorrt"}
    cases.append((trt, [], "TensorRT"))
    for i, (cfg, extra, expect) in enumerate(cases):
        path = tmp_path / f"rig{i}.toml"
        path.write_text(_toml(cfg))
        proc = _cli("serve", "--rig", str(path), "--bundle", str(bundle), *extra)
        assert proc.returncode == 2, (expect, proc.stderr[-1500:])
        assert expect in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-1500:]


@pytest.mark.parametrize(
    ("path", "value", "expect"),
    [
        ("stream.sample_rate", True, "stream.sample_rate = True: Input should be a valid number"),
        ("stream.channel_count", "32", "stream.channel_count = '32': Input should be a valid integer"),
        ("trials.ttl_line", 1.0, "trials.ttl_line = 1.0: Input should be a valid integer"),
        ("outputs.allow_remote", "yes", "outputs.allow_remote = 'yes': Input should be a valid boolean"),
    ],
)
def test_rig_configs_refuse_instead_of_coercing(path, value, expect):
    import copy

    data = copy.deepcopy(VALID)
    *parents, leaf = path.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    with pytest.raises(ConfigError, match=expect.replace(".", r"\.").replace("(", r"\(")):
        parse_rig_config(data, "rig.toml")


def test_an_nwb_with_a_block_of_zeroed_bytes_is_named_not_a_traceback(small_animal, tmp_path):
    src = small_animal / manifest(small_animal)["nwb"]
    dst = tmp_path / src.name
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r") as f:
        addr = h5py.h5o.get_info(f["units"].id).addr  # the units table's object header
    with open(dst, "r+b") as f:
        f.seek(addr)
        f.write(b"\0" * 4096)
    proc = _cli("session", "info", str(dst))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{dst}: damaged or unreadable" in proc.stderr


# -- property tests: thousands of inputs, no uncaught exception ---------------------------------
@settings(max_examples=1500, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=0, max_size=4))
def test_protocol_parser_never_raises_anything_but_protocol_error(frames):
    try:
        parse_frames(frames)
    except ProtocolError:
        pass


@settings(max_examples=800, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=30,
    )
)
def test_protocol_parser_survives_any_json_header(header):
    frames = [b"DATA\x00", json.dumps(header).encode(), np.zeros(4, "<f4").tobytes()]
    try:
        parse_frames(frames)
    except ProtocolError:
        pass


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.binary(max_size=2 * MAX_REQUEST_BYTES // 100), min_size=0, max_size=3))
def test_control_request_parser_never_raises(frames):
    cmd, error = parse_request(frames)
    assert (cmd is None) != (error is None)
    assert cmd in (None, "status", "stop")


@settings(max_examples=1000, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["name", "stream", "trials", "outputs", "sorting", "model", "probe", "extra"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=12), c, max_size=5),
            max_leaves=15,
        ),
    )
)
def test_config_loader_raises_only_config_errors(data):
    try:
        parse_rig_config(data, "fuzz.toml")
    except ConfigError as err:
        assert str(err).startswith("fuzz.toml: ")


def test_float32_sample_rates_fit():
    """The plugin writes its float32 rate (29999.900390625 for 29999.9); it must fit a 29999.9 rig."""
    from rtdecode.stream.continuity import rates_agree

    assert rates_agree(float(np.float32(29999.9)), 29999.9)
    assert not rates_agree(25000.0, 30000.0) and not rates_agree(math.nan, 30000.0)


def test_a_masked_stream_with_gaps_in_channel_num_is_assembled(bundle, tmp_path):
    """The plugin sends only its mask's channels under their own numbers (here every other one of 32):
    with ``channel_numbers`` in the rig config every block is whole."""
    rec = tmp_path / "rec32"
    rng = np.random.default_rng(1)
    w = BinaryRecordingWriter(rec, FS, 32)
    w.append(rng.normal(0, 7, (int(3 * FS), 32)))
    onsets = np.array([int(0.5 * FS), int(1.5 * FS)])
    w.add_ttl(onsets, 0, np.ones(2, dtype=int))
    w.close()
    mask = list(range(0, 32, 2))
    cfg = rig(16, tmp_path, channel_numbers=mask)
    from rtdecode.replay.replayer import Replayer

    rep = Replayer(rec, cfg.stream.data_port, speed=2.0, wait_for_heartbeat_s=10, channels=mask)
    d = Daemon(cfg, bundle, tmp_path / "d.jsonl", log=lambda *_: None)
    d.start()
    import threading

    th = threading.Thread(target=rep.run)
    th.start()
    th.join()
    wait_settled(d)
    d.stop()
    d.wait()
    c = d.status()["counters"]
    assert rep.stats.blocks == c["blocks"] > 100 and c["incomplete_blocks"] == 0 and c["wrong_channel_count"] == 0
    lines = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [x["status"] for x in lines if "seq" in x] == ["ok", "ok"]
    with pytest.raises(ConfigError, match="channel_numbers must list channel_count = 16"):
        rig(16, tmp_path, channel_numbers=mask[:-1])


def test_remote_binding_without_curve_keys_is_refused_with_the_reason():
    import copy

    data = copy.deepcopy(VALID)
    data["outputs"] |= {"bind_host": "0.0.0.0", "allow_remote": True}
    with pytest.raises(ConfigError, match="nothing would authenticate its peers: set curve_server_key"):
        parse_rig_config(data, "rig.toml")


def test_curve_lets_authorized_clients_in_and_keeps_others_out(bundle, tmp_path):
    from rtdecode.curve import create_keypair, load_keys

    _, server_secret = create_keypair(tmp_path / "server", "server")
    allowed = tmp_path / "authorized"
    good_public, good_secret = create_keypair(tmp_path / "good", "rig-pc")
    allowed.mkdir()
    (allowed / good_public.name).write_bytes(good_public.read_bytes())
    _, bad_secret = create_keypair(tmp_path / "bad", "stranger")
    cfg = rig(16, tmp_path)
    cfg = cfg.model_copy(
        update={
            "outputs": cfg.outputs.model_copy(
                update={"curve_server_key": server_secret, "curve_authorized_clients": allowed}
            )
        }
    )
    d = Daemon(cfg, bundle, tmp_path / "d.jsonl", log=lambda *_: None)
    d.start()
    address = f"tcp://127.0.0.1:{cfg.outputs.control_port}"
    server_public = load_keys(server_secret).public
    try:
        assert control_request(address, "status", curve=(load_keys(good_secret), server_public))["state"] == "ready"
        with pytest.raises(TimeoutError):  # a key the daemon does not know
            control_request(address, "status", timeout_s=1.5, curve=(load_keys(bad_secret), server_public))
        with pytest.raises(TimeoutError):  # no CURVE at all
            control_request(address, "status", timeout_s=1.5)
    finally:
        d.stop()
        d.wait()
    proc = _cli("keys", "--out", str(tmp_path / "cli"), "--name", "daemon")
    assert proc.returncode == 0 and (tmp_path / "cli" / "daemon.key_secret").is_file()
    assert (tmp_path / "cli" / "daemon.key_secret").stat().st_mode & 0o077 == 0


def test_a_failing_backend_still_gives_every_onset_its_decision(bundle, short_recording, tmp_path):
    """If inference raises (a GPU lost, a bug), the trial is published degraded, not dropped."""
    from rtdecode.bundle import Bundle
    from rtdecode.decode import decode_recording
    from rtdecode.pipeline import OnlinePipeline
    from rtdecode.stream.recording import RecordingSource

    class Broken:
        name = "broken"
        input_shape = (1, 3, 32, 32)
        device = "nowhere"

        def infer(self, x):
            raise RuntimeError("device lost")

        def warmup(self, n=5):
            pass

    messages = []
    p = OnlinePipeline(Bundle.load(bundle), rig(16, tmp_path), backend=Broken(), log=messages.append)
    decisions = list(decode_recording(p, RecordingSource(short_recording)))
    assert len(decisions) == len(ONSETS) and p.counters()["decode_errors"] == len(ONSETS)
    assert {d.status for d in decisions} == {"degraded: internal error (RuntimeError: device lost)"}
    assert len(messages) == len(ONSETS) and "Traceback" in messages[0]


def test_a_publisher_that_goes_and_comes_back_and_a_stopped_decision_subscriber(bundle, short_recording, tmp_path):
    """The GUI stops and starts again (a second replay on the same port: message_num and sample_num
    restart), while a decision subscriber that never reads sits on the PUB socket: the daemon keeps
    going, sees one restart, and decides every onset of both runs."""
    import threading

    from rtdecode.replay.replayer import Replayer

    cfg = rig(16, tmp_path)
    d = Daemon(cfg, bundle, tmp_path / "d.jsonl", log=lambda *_: None)
    d.start()
    ctx = zmq.Context.instance()
    stuck = ctx.socket(zmq.SUB)  # subscribes, never reads
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.setsockopt(zmq.SUBSCRIBE, b"")
    stuck.connect(f"tcp://127.0.0.1:{cfg.outputs.decision_port}")
    try:
        for _ in range(2):
            rep = Replayer(short_recording, cfg.stream.data_port, speed=3.0, wait_for_heartbeat_s=10)
            th = threading.Thread(target=rep.run)
            th.start()
            th.join()
            time.sleep(1.0)  # the scenario: the publisher is gone for a while (not a wait)
        deadline = time.monotonic() + 10
        while d.counters["decisions"] < 2 * len(ONSETS) and time.monotonic() < deadline:
            time.sleep(0.05)
        st_ = d.status()
    finally:
        d.stop()
        d.wait()
        stuck.close()
    c = st_["counters"]
    assert st_["state"] == "running" and c["restarts"] == 1 and c["internal_errors"] == 0
    assert c["onsets"] == c["decisions"] == 2 * len(ONSETS) and c["degraded"] == 0


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited child its parent has not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_kill_9_leaves_a_valid_log_and_a_restart_appends_under_a_new_run(bundle, short_recording, tmp_path):
    import os
    import signal

    from rtdecode.replay.replayer import Replayer

    cfg = rig(16, tmp_path)
    from .test_online import _toml

    path = tmp_path / "rig.toml"
    path.write_text(_toml(cfg.model_dump(mode="json")))
    log = tmp_path / "decisions.jsonl"
    for attempt in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-m", "rtdecode", "serve", "--rig", str(path), "--bundle", str(bundle), "--log", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        rep = Replayer(short_recording, cfg.stream.data_port, speed=2.0, wait_for_heartbeat_s=30)
        rep.run()
        if attempt == 0:
            deadline = time.monotonic() + 20
            while log.read_text().count('"seq"') < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            receiver_pid = control_request(f"tcp://127.0.0.1:{cfg.outputs.control_port}", "status")["receiver"]["pid"]
            os.kill(proc.pid, signal.SIGKILL)  # mid-run, no chance to write a stop record
            proc.wait()
            killed_pid = proc.pid
            deadline = time.monotonic() + 10
            while _running(receiver_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _running(receiver_pid)  # the receiver process does not outlive its daemon
        else:
            wait_until(
                lambda: (
                    control_request(f"tcp://127.0.0.1:{cfg.outputs.control_port}", "status")["counters"]["decisions"]
                    >= len(ONSETS) - 1
                ),
                30,
                "the restarted daemon's decisions",
                every_s=0.2,
            )
            assert control_request(f"tcp://127.0.0.1:{cfg.outputs.control_port}", "stop")["state"] == "draining"
            assert proc.wait(30) == 0, proc.stderr.read()[-2000:]
    from rtdecode.stream.ring import SHM_DIR

    assert not list(SHM_DIR.glob(f"rtdecode-ring-{killed_pid}-*"))  # nothing of the killed daemon is left
    assert not list(SHM_DIR.glob(f"rtdecode-ring-{proc.pid}-*"))  # nor of the stopped one
    records = [json.loads(x) for x in log.read_text().splitlines()]  # every line is valid JSON
    starts = [r for r in records if r.get("event") == "start"]
    assert len(starts) == 2 and starts[0]["run_id"] != starts[1]["run_id"]
    assert [r["event"] for r in records if "event" in r].count("stop") == 1  # only the clean run ended
    second = [r for r in records if r.get("run_id") == starts[1]["run_id"] and "seq" in r]
    assert [r["seq"] for r in second] == list(range(1, len(ONSETS) + 1))


def test_a_huge_message_is_bounded_before_allocation(bundle, short_recording, tmp_path):
    """1 M samples in one message: refused by the assembler (``oversized``) without growing its buffer;
    nothing else is lost."""
    res, log = _serve(bundle, short_recording, tmp_path, [Fault.parse("stray=3000:huge")])
    st_, c = res.status, res.status["counters"]
    print({k: c[k] for k in ("blocks", "lost_messages", "oversized", "degraded", "restarts")})
    assert st_["state"] == "stopped" and st_["failure"] is None
    _assert_every_onset_decided_once(res, log)
    assert c["oversized"] == 1 and c["internal_errors"] == 0
    assert [d["status"] for d in res.decisions] == ["ok"] * len(ONSETS)


def test_a_log_that_cannot_be_written_refuses_the_run_at_start(bundle, tmp_path):
    from rtdecode.errors import RtdecodeError
    from rtdecode.stream.ring import SHM_DIR

    before = set(SHM_DIR.glob("rtdecode-ring-*"))
    with pytest.raises(RtdecodeError, match=r"cannot write the decision log /dev/full: No space left on device"):
        Daemon(rig(16, tmp_path), bundle, "/dev/full", log=lambda *_: None)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(RtdecodeError, match=r"cannot open the decision log .*a-file/d\.jsonl"):
        Daemon(rig(16, tmp_path), bundle, tmp_path / "a-file" / "d.jsonl", log=lambda *_: None)
    assert set(SHM_DIR.glob("rtdecode-ring-*")) == before  # nothing left behind


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (root only: CI runs as root) that a test can fill and empty again."""
    path = tmp_path / "small"
    path.mkdir()
    cmd = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(path)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({res.stderr.strip() or res.returncode}); needs root")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(disk) -> None:
    """Write zeros until the file system says it is full."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


@pytest.mark.parametrize("space_comes_back", [True, False])
def test_a_log_on_a_disk_that_fills_mid_run_never_stops_the_decisions(
    bundle, short_recording, tmp_path, small_disk, space_comes_back
):
    from rtdecode.replay.replayer import Replayer

    cfg = rig(16, tmp_path)
    log_path = small_disk / "d.jsonl"
    said: list[str] = []
    d = Daemon(cfg, bundle, log_path, log=said.append)
    d.start()
    client = DecisionClient(f"tcp://127.0.0.1:{cfg.outputs.decision_port}")
    assert client.wait_connected(10)  # before anything is published
    rep = Replayer(short_recording, cfg.stream.data_port, speed=2.0, wait_for_heartbeat_s=10)
    th = threading.Thread(target=rep.run)
    th.start()
    published, health = [], []
    filled = emptied = False
    shown = None  # what `rtdecode status` shows an operator while the log fails
    try:
        deadline = time.monotonic() + 60
        while (th.is_alive() or len(published) < len(ONSETS)) and time.monotonic() < deadline:
            if (m := client.poll(50)) is not None:
                published.append(m)
            if not filled and len(published) >= 3:
                _fill(small_disk)  # the disk fills mid-run
                filled = True
            h = d.status()["decision_log_health"]
            health.append(h)
            if shown is None and not space_comes_back and h["unlogged"] >= 3:
                from .test_online import _toml

                rig_file = tmp_path / "rig.toml"
                rig_file.write_text(_toml(cfg.model_dump(mode="json")))
                shown = _cli("status", "--rig", str(rig_file)).stdout
            if space_comes_back and filled and not emptied and h["unlogged"] >= 3:
                (small_disk / "filler").unlink()  # space comes back
                emptied = True
    finally:
        rep.stop()
        th.join()
        d.stop()
        d.wait()
        while (m := client.poll(300)) is not None:
            published.append(m)
        client.close()
    assert [m["onset_sample"] for m in published] == [int(o) for o in ONSETS]  # every onset published, once
    assert max(h["unlogged"] for h in health) >= 3 and all(h["failures"] <= 1 for h in health)
    assert len([s for s in said if "cannot be written (No space left on device)" in s]) == 1  # said once
    assert not [s for s in said if "Traceback" in s]
    records = [json.loads(x) for x in log_path.read_text().splitlines()]  # every line parses: none torn
    logged = [r["seq"] for r in records if "seq" in r]
    assert logged == sorted(set(logged))  # in order, none twice
    if space_comes_back:
        assert logged == list(range(1, len(ONSETS) + 1))  # the ones kept in memory written late, in order
        stop = records[-1]
        assert stop["event"] == "stop" and stop["onsets"]["seen"] == stop["onsets"]["decided"] == len(ONSETS)
        assert stop["status"]["decision_log_health"]["error"] is None
        assert len([s for s in said if "is written again" in s]) == 1
    else:
        assert "cannot be written: No space left on device" in shown and "not in it yet" in shown, shown
        assert len(logged) < len(ONSETS) and records[-1].get("event") != "stop"
        where = Path(tempfile.gettempdir()) / f"rtdecode-stop-{d.run_id}.json"
        stop = json.loads(where.read_text())
        assert stop["onsets"]["decided"] == len(ONSETS) and stop["onsets"]["undecided"] == 0
        missing = len(ONSETS) - len(logged)
        assert any(f"missing its last {missing} record(s)" in s and str(where) in s for s in said), said[-3:]
        where.unlink()


LONG_S = 40.0
LONG_ONSETS = np.arange(int(0.5 * FS), int((LONG_S - 0.5) * FS), int(0.3 * FS))  # 130 onsets


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory):
    """40 s of the short recording's kind: long enough that a stalled receiver makes the publisher drop."""
    path = tmp_path_factory.mktemp("long") / "rec"
    rng = np.random.default_rng(6)
    w = BinaryRecordingWriter(path, FS, 16)
    for _ in range(int(LONG_S / 5)):
        w.append(rng.normal(0, 7, (int(5 * FS), 16)))
    w.add_ttl(LONG_ONSETS, 0, np.ones(len(LONG_ONSETS), dtype=int))
    w.close()
    return path


def test_a_receiver_stalled_until_the_upstream_drops_leaves_every_onset_accounted_for(bundle, long_recording, tmp_path):
    """SIGSTOP the receiver process for 4 s while the stream runs at 8x: once the socket buffers fill,
    the publisher (libzmq's PUB, as in the plugin) drops. The dropped span is logged with its samples
    and cause, every onset outside it is decided, and the stop record's totals add up."""
    from rtdecode.replay.replayer import Replayer

    cfg = rig(16, tmp_path)
    log = tmp_path / "d.jsonl"
    said: list[str] = []
    d = Daemon(cfg, bundle, log, log=said.append)
    d.start()
    rep = Replayer(long_recording, cfg.stream.data_port, speed=8.0, wait_for_heartbeat_s=10)
    th = threading.Thread(target=rep.run)
    th.start()
    try:
        wait_for_onsets(d, 5)
        pid = d.receiver.pid
        os.kill(pid, signal.SIGSTOP)
        time.sleep(4.0)  # the scenario, not a wait: 32 s of stream at 8x, more than the publisher and buffers hold
        os.kill(pid, signal.SIGCONT)
        th.join()
        wait_settled(d)
    finally:
        os.kill(pid, signal.SIGCONT)
        rep.stop()
        th.join()
        d.stop()
        d.wait()
    records = [json.loads(x) for x in log.read_text().splitlines()]
    gaps = [r for r in records if r.get("event") == "gap"]
    assert any(g["cause"] == "message gap" and g["onsets_may_be_missing"] for g in gaps), gaps
    assert_every_onset_accounted_for(records, LONG_ONSETS, stream_s=LONG_S)
    assert d.receiver_totals.processes == 1 and records[-1]["status"]["counters"]["receiver_restarts"] == 0
    assert any("message gap; stimulus onsets in it may be missing" in s for s in said)
    # the daemon tells its own stalled receiver from a silent upstream
    assert any("the receiver process" in s and "has not reported for" in s for s in said), said
    assert [r["cause"] for r in records if r.get("event") == "silent"] == ["receiver stalled"]
    assert not [r for r in records if "seq" in r and r["status"] == "degraded: upstream silent"]
