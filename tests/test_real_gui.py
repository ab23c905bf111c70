"""Integration tests against the real upstream: the Open Ephys GUI 1.0.1 with its ZMQ Interface and
Falcon Output plugins (and Network Events), from ``../shared/oe-gui/`` or ``RTDECODE_OE_GUI``.

The GUI runs on a virtual display with a null audio sink (its own ``run_gui.sh``), driven by its HTTP
API: a File Reader plays a short excerpt of a simulated recording into a sink plugin, and
``rtdecode serve`` (its own process, as on a rig) decodes what the GUI sends. These tests are marked
``gui``; they skip with the reason only where no GUI is found, and ``.ci/run`` sets the GUI up so CI
runs them. They take a few minutes: the GUI plays in real time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from .conftest import free_port_pair
from .gui_helpers import build_chain, excerpt_recording, load_chain, processor_id, set_mode
from .waiting import connect_and_wait

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RTDECODE_OE_GUI", ROOT.parent / "shared" / "oe-gui"))
#: Where setup.sh unpacks the GUI (it is idempotent: a second run only checks).
GUI_DIR = Path(os.environ.get("RTDECODE_OE_GUI_DIR", "/tmp/rtdecode-oe-gui"))
EXCERPT_S = 12.1  # onsets from 5 s on: 28 trials, every window inside the excerpt
ONSET_MARGIN_S = 0.35  # TTLs later than this before the excerpt's end are left out (their windows would not fit)
SINKS = {"zmq-interface": "ZMQ Interface", "falcon-output": "Falcon Output"}


def _reason() -> str | None:
    if not (SHARED / "setup.sh").is_file():
        return f"no Open Ephys GUI at {SHARED} (set RTDECODE_OE_GUI to the folder holding setup.sh and run_gui.sh)"
    return None


class Gui:
    """The GUI process, started and stopped with the shared scripts."""

    def __init__(self) -> None:
        self.dir = GUI_DIR

    def start(self, chain: Path | None = None) -> None:
        args = [str(SHARED / "run_gui.sh"), str(self.dir)] + ([str(chain)] if chain else [])
        proc = subprocess.run(args, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, f"run_gui.sh failed:\n{proc.stdout}\n{proc.stderr}"

    def stop(self) -> None:
        subprocess.run([str(SHARED / "stop_gui.sh"), str(self.dir)], capture_output=True, text=True, timeout=60)

    @property
    def pid(self) -> int:
        env = dict(line.split("=", 1) for line in (self.dir / "run.env").read_text().split() if "=" in line)
        return int(env["GUI_PID"])

    def idle(self) -> None:
        """Stop acquisition. GUI 1.0.1 now and then never answers the request that stops a Falcon Output
        chain (its activity log ends at "Removing audio callback."); then the GUI is restarted, so one
        hang does not take the tests after it down."""
        try:
            set_mode("IDLE", timeout=15)
        except (TimeoutError, OSError, AssertionError) as err:
            print(f"the GUI did not answer IDLE ({err}); restarting it")
            self.kill()
            self.stop()
            self.start()

    def kill(self) -> None:
        """The GUI crashing: SIGKILL, nothing flushed."""
        os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


@pytest.fixture(scope="module")
def gui():
    reason = _reason()
    if reason:
        pytest.skip(reason)
    setup = subprocess.run([str(SHARED / "setup.sh"), str(GUI_DIR)], capture_output=True, text=True, timeout=900)
    assert setup.returncode == 0, f"setup.sh failed:\n{setup.stdout}\n{setup.stderr}"
    extra = SHARED / "plugins-extra" / "network-events.so"
    if extra.is_file():
        (GUI_DIR / "plugins" / extra.name).write_bytes(extra.read_bytes())
    g = Gui()
    g.stop()  # a GUI left over from an interrupted run
    yield g
    g.stop()


@pytest.fixture(autouse=True)
def fresh_gui(request):
    """Every test starts a GUI of its own (3 s). GUI 1.0.1 with ZMQ Interface 1.0.0 hangs when a chain whose
    ZMQ Interface served a heartbeating client is cleared (measured: ``/api/processors/clear`` never
    returns after ``rtdecode serve`` ran behind it), so one GUI is not reused across chains."""
    if "gui" not in request.fixturenames:
        yield
        return
    g = request.getfixturevalue("gui")
    g.stop()
    g.start()
    yield


@pytest.fixture(scope="module")
def excerpt(three_animals, tmp_path_factory) -> Path:
    return excerpt_recording(
        three_animals[2] / "recording", tmp_path_factory.mktemp("excerpt"), EXCERPT_S, ONSET_MARGIN_S
    )


def _onsets(recording: Path) -> np.ndarray:
    from rtdecode.stream.recording import RecordingSource

    src = RecordingSource(recording)
    on = (src.ttl_lines == 0) & (src.ttl_states == 1)
    return src.ttl_samples[on] - int(src.sample_numbers[0])  # File Reader playback starts at 0


def _rig_toml(path: Path, bundle: Path, protocol: str, data_port: int, extra: str = "") -> Path:
    m = json.loads((bundle / "manifest.json").read_text())
    decision, control = free_port_pair((data_port, data_port + 1)), None
    control = free_port_pair((data_port, data_port + 1, decision, decision + 1))
    heartbeat = f"heartbeat_port = {data_port + 1}\n" if protocol == "zmq-interface" else ""
    path.write_text(
        f"""name = "real GUI ({protocol})"
[stream]
protocol = "{protocol}"
host = "127.0.0.1"
data_port = {data_port}
{heartbeat}stream_name = "{m["stream_name"]}"
channel_count = {m["channel_count"]}
sample_rate = {m["sample_rate"]}
silence_timeout_s = 2.0
[trials]
ttl_line = {m["ttl_line"]}
[outputs]
decision_port = {decision}
control_port = {control}
decision_log_dir = "{path.parent / "decisions"}"
{extra}"""
    )
    return path


class Serve:
    """``rtdecode serve`` in its own process, and its control socket."""

    def __init__(self, rig: Path, bundle: Path, log: Path) -> None:
        self.rig, self.log = rig, log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtdecode", "serve", "--rig", str(rig), "--bundle", str(bundle), "--log", str(log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        from rtdecode.config import load_rig_config

        self.cfg = load_rig_config(rig)
        self.ctx = zmq.Context.instance()
        self.wait(lambda s: s["state"] in ("ready", "running"), 120, "the daemon to be ready")

    def status(self) -> dict | None:
        req = self.ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.connect(f"tcp://127.0.0.1:{self.cfg.outputs.control_port}")
        try:
            req.send_json({"cmd": "status"})
            return req.recv_json() if req.poll(2000) else None
        finally:
            req.close()

    def wait(self, cond, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"rtdecode serve exited:\n{self.proc.stdout.read()}"
            last = self.status()
            if last is not None and cond(last):
                return last
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; last status: {last}")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=60)
        return out

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


def _decisions(records: list[dict], segment: int | None = None) -> list[dict]:
    return [r for r in records if "seq" in r and (segment is None or r["segment"] == segment)]


@pytest.fixture(scope="module")
def offline_decisions(bundle, excerpt, tmp_path_factory) -> list[dict]:
    """``rtdecode decode`` on the same excerpt: what the GUI-fed daemon must reproduce."""
    from typer.testing import CliRunner

    from rtdecode.cli import app

    out = tmp_path_factory.mktemp("offline") / "decode.jsonl"
    r = CliRunner().invoke(app, ["decode", str(excerpt), "--bundle", str(bundle), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return _decisions([json.loads(line) for line in out.read_text().splitlines()])


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", list(SINKS))
def test_the_gui_streams_what_was_recorded(gui, excerpt, protocol, tmp_path):
    """Channel names and numbers, sample rate, the stream's name and every value (int16 x bit_volts)
    as recorded; blocks of 696 samples numbered from 0."""
    from rtdecode.stream.falcon import parse_continuous_data
    from rtdecode.stream.protocol import DataMessage, parse_frames
    from rtdecode.stream.recording import RecordingSource

    port = free_port_pair()
    build_chain(excerpt, [(SINKS[protocol], {"data_port": port})], tmp_path / "chain.xml")
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    connect_and_wait(sub, f"tcp://127.0.0.1:{port}")  # the plugin's socket is bound once the chain is loaded
    set_mode("ACQUIRE")
    got = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if sub.poll(100):
            got.append(sub.recv_multipart())
    sub.close()
    gui.idle()
    src = RecordingSource(excerpt)
    raw = src.samples.astype(np.float32) * src.bit_volts[None, :]
    blocks = 0
    for frames in got:
        if protocol == "falcon-output":
            m = parse_continuous_data(frames[0])
            assert (m.stream, m.n_channels, m.sample_rate, m.n_samples) == (
                "Neuropix-PXI-100.ProbeA-AP",
                src.n_channels,
                30000,
                696,
            )
            np.testing.assert_allclose(m.samples, raw[m.sample_num : m.sample_num + 696].T, atol=1e-3)
            blocks += 1
            continue
        m = parse_frames(frames)
        if not isinstance(m, DataMessage):
            continue
        header = json.loads(frames[1])
        assert header["content"]["channel_name"] == src.channel_names[m.channel_num]
        assert (m.stream, m.sample_rate, m.num_samples) == ("Neuropix-PXI-100.ProbeA-AP", 30000.0, 696)
        assert m.sample_num % 696 == 0  # File Reader playback numbers from 0
        np.testing.assert_allclose(m.samples, raw[m.sample_num : m.sample_num + 696, m.channel_num], atol=1e-3)
        blocks += m.channel_num == 0
    assert blocks > 60  # ~3 s of 23 ms blocks


@pytest.mark.parametrize("protocol", list(SINKS))
def test_serve_behind_the_real_gui_decides_every_onset_as_decode_does(
    gui, bundle, excerpt, offline_decisions, protocol, tmp_path
):
    """File Reader -> plugin -> ``rtdecode serve``: the shipped matching rule takes the File Reader's
    stream name, every onset gets its decision, and each equals ``rtdecode decode``'s on the same trial."""
    port = free_port_pair()
    build_chain(excerpt, [(SINKS[protocol], {"data_port": port})], tmp_path / "chain.xml")
    serve = Serve(_rig_toml(tmp_path / "rig.toml", bundle, protocol, port), bundle, tmp_path / "d.jsonl")
    try:
        set_mode("ACQUIRE")
        n = len(_onsets(excerpt))
        serve.wait(lambda s: s["counters"]["decisions"] >= n, 60, f"{n} decisions")
    finally:
        out = serve.stop()
        gui.idle()
    records = serve.records()
    online = _decisions(records, segment=1)
    assert len(online) == n == len(offline_decisions), out
    first = offline_decisions[0]["segment_first_sample"]
    for a, b in zip(online, offline_decisions, strict=True):
        assert a["onset_index"] == b["onset_index"]
        assert a["onset_sample"] == b["onset_sample"] - first  # File Reader playback: origin 0
        assert a["status"] == b["status"] == "ok"
        assert a["predicted_class"] == b["predicted_class"]
        for k, p in a["probabilities"].items():
            assert p == pytest.approx(b["probabilities"][k], abs=1e-4)
    stop = records[-1]
    assert stop["event"] == "stop" and stop["onsets"]["undecided"] == 0
    assert stop["status"]["counters"]["wrong_stream"] == 0 and stop["status"]["counters"]["lost_messages"] == 0


def test_stop_start_and_the_playback_loop_are_new_segments_not_faults(gui, bundle, excerpt, tmp_path):
    """Acquisition stopped and started again (message_num from 1, sample_num going on) and the File Reader
    looping at the end of the file (sample_num going back) are each a new segment, logged; every onset
    still gets exactly one decision, and the loop's trials decode as the first pass's, index by index."""
    port = free_port_pair()
    build_chain(excerpt, [("ZMQ Interface", {"data_port": port})], tmp_path / "chain.xml")
    serve = Serve(_rig_toml(tmp_path / "rig.toml", bundle, "zmq-interface", port), bundle, tmp_path / "d.jsonl")
    try:
        set_mode("ACQUIRE")
        serve.wait(lambda s: s["counters"]["decisions"] >= 6, 30, "the first decisions")
        gui.idle()
        time.sleep(1.0)  # shorter than the silence timeout: a stop/start, not a dead upstream
        set_mode("ACQUIRE")
        n = len(_onsets(excerpt))
        serve.wait(lambda s: s["counters"]["decisions"] >= n + 4, 60, "decisions after the loop")
        gui.idle()
    finally:
        out = serve.stop()
    records = serve.records()
    segments = [r for r in records if r.get("event") == "segment"]
    assert [s["segment"] for s in segments][:2] == [2, 3], out
    assert "message_num restarted at 1" in segments[0]["cause"]
    assert "sample_num went back" in segments[1]["cause"]
    decisions = _decisions(records)
    onsets = sorted((d["segment"], d["onset_sample"]) for d in decisions)
    assert len(onsets) == len(set(onsets))  # one decision per onset
    stop = records[-1]
    assert stop["onsets"]["seen"] == stop["onsets"]["decided"] and stop["status"]["counters"]["internal_errors"] == 0
    first_pass = {d["onset_sample"]: d for d in decisions if d["segment"] == 2 and d["status"] == "ok"}
    loop = [d for d in decisions if d["segment"] == 3 and d["status"] == "ok"]
    assert loop
    for d in loop:
        if d["onset_sample"] in first_pass:
            assert d["predicted_class"] == first_pass[d["onset_sample"]]["predicted_class"]
    assert "new segment 2" in out and "new segment 3" in out


def test_a_gui_killed_mid_stream_shows_in_status_and_the_daemon_recovers(gui, bundle, excerpt, tmp_path):
    port = free_port_pair()
    chain = build_chain(excerpt, [("ZMQ Interface", {"data_port": port})], tmp_path / "chain.xml")
    serve = Serve(_rig_toml(tmp_path / "rig.toml", bundle, "zmq-interface", port), bundle, tmp_path / "d.jsonl")
    try:
        set_mode("ACQUIRE")
        serve.wait(lambda s: s["counters"]["decisions"] >= 4, 30, "the first decisions")
        gui.kill()
        t0 = time.monotonic()
        s = serve.wait(lambda s: s["state"].startswith("upstream silent"), 10, "the silence to show")
        assert time.monotonic() - t0 < 5
        decided = s["counters"]["decisions"]
        gui.start(chain)
        set_mode("ACQUIRE")
        serve.wait(lambda s: s["state"] == "running" and s["counters"]["decisions"] > decided + 3, 60, "recovery")
        gui.idle()
    finally:
        out = serve.stop()
    records = serve.records()
    assert any(r.get("event") == "silent" for r in records) and any(r.get("event") == "resumed" for r in records)
    silenced = [d for d in _decisions(records) if d["status"] == "degraded: upstream silent"]
    assert silenced, "the trial open when the GUI died is decided degraded: upstream silent"
    stop = records[-1]
    assert stop["status"]["counters"]["silences"] >= 1 and stop["status"]["counters"]["heartbeat_failures"] >= 0
    assert stop["onsets"]["seen"] == stop["onsets"]["decided"], out


def test_the_loop_closes_through_network_events(gui, bundle, excerpt, tmp_path):
    """Decisions -> Network Events -> the GUI's TTL events on the stream: one ON and one OFF per decision on
    distinct samples, and none of them taken as a stimulus onset."""
    from rtdecode.stream.protocol import TtlMessage, parse_frames

    port = free_port_pair()
    ne_port = free_port_pair((port, port + 1))
    chain = build_chain(
        excerpt, [("Network Events", {}), ("ZMQ Interface", {"data_port": port})], tmp_path / "chain.xml"
    )
    text = chain.read_text()
    assert "NETWORKEVENTS" in text, "the saved chain has no Network Events parameters to set the port in"
    import re

    chain.write_text(re.sub(r'(<NETWORKEVENTS[^>]*port=")\d+(")', rf"\g<1>{ne_port}\g<2>", text))
    load_chain(chain)
    extra = f"[outputs.network_events]\nport = {ne_port}\nttl_line = 4\n"
    serve = Serve(_rig_toml(tmp_path / "rig.toml", bundle, "zmq-interface", port, extra), bundle, tmp_path / "d.jsonl")
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{port}")
    feedback = []
    try:
        set_mode("ACQUIRE")
        n = len(_onsets(excerpt))
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and len([f for f in feedback if f[1] == 0]) < n:
            if sub.poll(100):
                m = parse_frames(sub.recv_multipart())
                if isinstance(m, TtlMessage) and m.line == 3:
                    feedback.append((m.sample_num, m.state, m.source_node))
        gui.idle()
    finally:
        out = serve.stop()
        sub.close()
    records = serve.records()
    decisions = [d for d in _decisions(records, segment=1) if d["status"] == "ok"]
    on = [f[0] for f in feedback if f[1] == 1]
    off = [f[0] for f in feedback if f[1] == 0]
    assert len(on) == len(off) >= len(decisions) - 1, out  # the last pulse may end after acquisition stops
    assert all(b > a for a, b in zip(on, off, strict=False))  # OFF on a later sample than its ON
    stop = records[-1]
    assert stop["onsets"]["seen"] == n  # our own pulses were never taken for onsets
    assert stop["status"]["counters"]["own_feedback_ttls"] >= len(on)
    assert {f[2] for f in feedback} == {processor_id("Network Events")}


def test_the_replayer_sends_what_the_real_gui_sends(gui, excerpt, tmp_path):
    """The same excerpt through the GUI's ZMQ Interface and through ``rtdecode replay --origin zero``:
    header fields (names, order, types), stream and channel names, block sizes and numbering, message
    numbering, TTL payloads and where TTLs sit relative to blocks, field by field."""
    from rtdecode.replay.replayer import Replayer

    def capture(port: int, start, stop, bound_before_start: bool, seconds: float = 9.0) -> list[list[bytes]]:
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        if bound_before_start:  # the GUI: its sockets open with the chain, and it sends as soon as it acquires
            connect_and_wait(sub, f"tcp://127.0.0.1:{port}")
            start()
        else:  # the replayer binds when it starts, and sends only after the heartbeat below
            start()
            connect_and_wait(sub, f"tcp://127.0.0.1:{port}")
        hb = zmq.Context.instance().socket(zmq.REQ)  # a client's heartbeat, as the plugin expects one
        hb.setsockopt(zmq.LINGER, 0)
        hb.connect(f"tcp://127.0.0.1:{port + 1}")
        hb.send_json({"application": "rtdecode-test", "uuid": "0", "type": "heartbeat"})
        got, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            if sub.poll(100):
                got.append(sub.recv_multipart())
        stop()
        sub.close()
        hb.close()
        return got

    port = free_port_pair()
    build_chain(excerpt, [("ZMQ Interface", {"data_port": port})], tmp_path / "chain.xml")
    real = capture(port, lambda: set_mode("ACQUIRE"), gui.idle, bound_before_start=True)
    rport = free_port_pair((port, port + 1))
    rep = Replayer(excerpt, port=rport, origin="zero", file_reader_names=True, wait_for_heartbeat_s=10)
    import threading

    t = threading.Thread(target=rep.run, daemon=True)
    ours = capture(rport, t.start, rep.stop, bound_before_start=False)
    t.join(5)

    def summary(frames_list, limit):
        out = []
        for f in frames_list:
            h = json.loads(f[1])
            if h["type"] == "data" and h["content"]["sample_num"] >= limit:
                break
            keys = (list(h), list(h["content"]))
            c = {k: v for k, v in h["content"].items() if k != "source_node"}
            out.append((f[0], keys, h["message_num"], h["type"], c, f[2] if h["type"] == "event" else len(f[2])))
        return out

    limit = 696 * 300  # the first 300 blocks (7 s: the first 8 stimulus onsets) of both
    a, b = summary(real, limit), summary(ours, limit)
    for k, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            print("first difference at message", k, "\nGUI:     ", x, "\nreplayer:", y)
            break
    assert len(a) == len(b) > 300 * 16
    for x, y in zip(a, b, strict=True):
        assert x == y
    ttl_real = [json.loads(f[1])["content"]["source_node"] for f in real if json.loads(f[1])["type"] == "event"]
    ttl_ours = [json.loads(f[1])["content"]["source_node"] for f in ours if json.loads(f[1])["type"] == "event"]
    assert ttl_real[:16] == ttl_ours[:16] == [100] * 16
