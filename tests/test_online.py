"""End to end on loopback: replayer -> daemon -> decisions, faults, mismatched streams, the plugin."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rtdecode.offline.bench.session import replay_through_daemon
from rtdecode.offline.sim.openephys_writer import BinaryRecordingWriter
from rtdecode.replay.replayer import Fault

from rtdecode import rig_configs
from rtdecode.client import control_request
from rtdecode.config import parse_rig_config
from rtdecode.daemon import Daemon

from .conftest import free_port_pair


def free_ports(n_pairs=3):
    """Distinct port pairs (p, p + 1) for the data/heartbeat pair and the daemon's sockets."""
    out: list[int] = []
    while len(out) < n_pairs:
        out.append(free_port_pair(tuple(out)))
    return out


def rig(channels, tmp_path, **stream):
    data, decision, control = free_ports(3)
    return parse_rig_config(
        {
            "name": "test",
            "stream": {
                "data_port": data,
                "heartbeat_port": data + 1,
                "stream_name": "ProbeA-AP",
                "channel_count": channels,
                "sample_rate": 30000.0,
                "heartbeat_interval_s": 0.5,
                **stream,
            },
            "trials": {"ttl_line": 0},
            "outputs": {"decision_port": decision, "control_port": control, "decision_log_dir": str(tmp_path)},
        }
    )


class FakeProcessor:
    """Stands in for the GUI's C++ PythonProcessor handle (only add_python_event exists)."""

    def __init__(self):
        self.events = []

    def add_python_event(self, line, state):
        self.events.append((line, bool(state)))


def run_session(bundle, recording, cfg, tmp_path, faults=(), speed=1.0, monkeypatch=None):
    """Replay through a real daemon on loopback (rtdecode.offline.bench.session); with ``monkeypatch`` the
    live rig plugin, driven by a fake processor handle, listens to the same decisions."""
    plugin = None
    if monkeypatch is not None:
        monkeypatch.setenv("RTDECODE_DECISIONS", f"tcp://127.0.0.1:{cfg.outputs.decision_port}")
        from rtdecode.plugins.openephys_python_processor import PyProcessor

        plugin = PyProcessor(FakeProcessor(), cfg.stream.channel_count, 30000.0)
    block = np.zeros((cfg.stream.channel_count, 700), np.float32)
    live = {}

    def tick():
        if plugin is not None:
            plugin.process(block)
        if "status" not in live and time.monotonic() - live.setdefault("t0", time.monotonic()) > 5:
            live["status"] = control_request(f"tcp://127.0.0.1:{cfg.outputs.control_port}", "status")

    res = replay_through_daemon(
        bundle, recording, cfg, tmp_path / "decisions.jsonl", speed=speed, faults=list(faults), on_tick=tick
    )
    for _ in range(5):  # later blocks turn the last pulses OFF
        tick()
    return res.decisions, res.status, res.replay, plugin, res.log_path, res.messages, live.get("status")


@pytest.fixture(scope="module")
def clean_run(bundle, three_animals, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("online_clean")
    target = three_animals[2]
    cfg = rig(16, tmp)
    mp = pytest.MonkeyPatch()
    try:
        out = run_session(bundle, target / "recording", cfg, tmp, speed=2.0, monkeypatch=mp)
    finally:
        mp.undo()
    return (target, cfg) + out


def test_every_onset_yields_exactly_one_decision(clean_run):
    target, cfg, decisions, status, stats, plugin, log, messages, live_status = clean_run
    stim = pd.read_csv(target / "stimulus_log.csv")
    print("daemon counters:", status["counters"])
    onsets = sorted(d["onset_sample"] for d in decisions)
    assert onsets == sorted(stim.onset_sample.tolist())
    assert [d["seq"] for d in decisions] == list(range(1, len(decisions) + 1))
    assert status["counters"]["overruns"] == 0 and status["counters"]["malformed"] == 0
    assert status["state"] == "stopped"
    ok = [d for d in decisions if d["status"] == "ok"]
    assert len(ok) >= len(decisions) - 1  # only a trial whose baseline precedes the stream may be degraded
    for d in ok:
        lat = d["latency_ns"]
        assert (
            lat["block_arrival"]
            <= lat["sorted"]
            <= lat["trial_closed"]
            <= lat["image"]
            <= lat["inference"]
            <= lat["published"]
        )
        assert set(d["probabilities"]) == {"natural", "artificial"}
    assert live_status["state"] == "running"
    # status was asked ~5 s into the replay (10 s of stream): the daemon had assembled that much of the stream
    assert 3 * 30000 / 750 <= live_status["counters"]["blocks"] <= status["counters"]["blocks"]
    print(
        f"online: {len(decisions)} decisions; latency p50/p99 total "
        f"{status['latency']['total']['p50_ms']:.1f}/{status['latency']['total']['p99_ms']:.1f} ms, inference "
        f"{status['latency']['inference']['p50_ms']:.2f}/{status['latency']['inference']['p99_ms']:.2f} ms"
    )


def test_served_and_offline_decisions_agree_per_trial(clean_run, bundle, tmp_path):
    """The daemon at twice real time and `rtdecode decode` on the same recording: the same decision for
    every trial -- status, class, and probabilities within 1e-6 -- not an accuracy tolerance."""
    target, cfg, decisions, *_ = clean_run
    out = tmp_path / "offline.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rtdecode",
            "decode",
            str(target / "recording"),
            "--bundle",
            str(bundle),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["event"] == "start" and lines[-1]["event"] == "stop"
    offline = [x for x in lines if "seq" in x]
    assert [d["seq"] for d in offline] == list(range(1, len(offline) + 1))
    assert set(offline[0]) == set(decisions[0]), "offline records must have the daemon's fields"
    on = {d["onset_sample"]: d for d in decisions}
    off = {d["onset_sample"]: d for d in offline}
    assert set(on) == set(off)
    n_ok = 0
    for onset, a in on.items():
        b = off[onset]
        assert a["status"] == b["status"], onset
        assert a["predicted_class"] == b["predicted_class"], onset
        assert (a["n_spikes"], a["n_units"]) == (b["n_spikes"], b["n_units"]), onset
        if a["status"] == "ok":
            n_ok += 1
            for k in ("artificial", "natural"):
                assert abs(a["probabilities"][k] - b["probabilities"][k]) <= 1e-6, (onset, k)
    assert n_ok >= len(on) - 1  # only a trial whose baseline precedes the stream may be degraded
    print(f"{n_ok} of {len(on)} trials ok and identical online and offline")


def test_decision_log_is_intact(clean_run):
    _, _, decisions, status, _, _, log, *_ = clean_run
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines[0]["event"] == "start" and lines[-1]["event"] == "stop"
    assert lines[1]["event"] == "warmup" and 0 < lines[1]["inference_ms_median"] < 10_000
    logged = [x for x in lines if "seq" in x]
    assert [x["seq"] for x in logged] == [d["seq"] for d in decisions]
    assert lines[0]["bundle_files"] and lines[0]["backend"].startswith("onnxruntime")


def test_plugin_emits_on_off_pairs(clean_run):
    _, _, decisions, _, _, plugin, *_ = clean_run
    ev = plugin.processor.events
    assert plugin.counters["decisions"] == len(decisions) and plugin.counters["errors"] == 0
    ons = [e for e in ev if e[1]]
    offs = [e for e in ev if not e[1]]
    n_ok = sum(d["status"] == "ok" for d in decisions)
    assert len(ons) == len(offs) == plugin.counters["pulses"]
    # every decoded trial became a pulse, or arrived while its line was still high
    assert plugin.counters["pulses"] + plugin.counters["coalesced"] == n_ok
    for line in {e[0] for e in ev}:  # each line alternates ON, OFF
        states = [s for ln, s in ev if ln == line]
        assert states == [True, False] * (len(states) // 2)
    assert {e[0] for e in ev} <= {1, 2}


def test_faults_degrade_trials_but_the_daemon_keeps_running(bundle, three_animals, tmp_path):
    target = three_animals[2]
    cfg = rig(16, tmp_path)
    # The recording is ~47,000 messages: faults spread over it (the restart last: it closes pending trials).
    faults = [
        Fault.parse(f)
        for f in (
            "drop=5000",
            "duplicate=10000",
            "corrupt=15000",
            "truncate=20000",
            "restart=35000",
            "stall=25000:0.3",
        )
    ]
    decisions, status, stats, _, log, messages, _ = run_session(
        bundle, target / "recording", cfg, tmp_path, faults=faults, speed=4.0
    )
    c = status["counters"]
    print("faults applied:", stats.faults_applied, "daemon counters:", c)
    assert stats.faults_applied == {"drop": 1, "duplicate": 1, "corrupt": 1, "truncate": 1, "restart": 1, "stall": 1}
    assert c["malformed"] == 2  # the corrupt header and the truncated payload
    assert c["duplicates"] == 1
    assert c["lost_messages"] == 3  # the dropped one and the two that could not be parsed
    assert c["restarts"] == 1
    assert c["incomplete_blocks"] == 3  # one per lost or unparseable data message
    assert status["state"] == "stopped" and status["failure"] is None
    degraded = [d for d in decisions if d["status"] != "ok"]
    reasons = " ".join(d["status"] for d in degraded)
    assert "message gap" in reasons and "acquisition restarted" in reasons
    ok = [d for d in decisions if d["status"] == "ok"]
    assert len(ok) > len(decisions) / 2
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["seq"] for x in lines if "seq" in x] == [d["seq"] for d in decisions]
    assert any("malformed message ignored" in m for m in messages)


def _tiny_recording(path, channels, rate, seconds=1.0):
    rng = np.random.default_rng(0)
    w = BinaryRecordingWriter(path, rate, channels)
    w.append(rng.normal(0, 7, (int(rate * seconds), channels)))
    w.add_ttl(np.array([int(rate * 0.5)]), 0, np.array([1]))
    w.close()
    return path


@pytest.mark.parametrize(
    ("channels", "rate", "expect"),
    [
        (8, 30000.0, "stream has 8 channels, the bundle expects 16"),
        (16, 25000.0, "stream sample rate 25000.0 Hz does not fit the bundle (30000.0 Hz)"),
    ],
)
def test_mismatched_stream_is_refused_naming_both_values(bundle, tmp_path, channels, rate, expect):
    """A stream that stays wrong is declared unfit (naming both values) and the daemon waits for a
    fitting one -- it neither decodes it nor dies."""
    rec = _tiny_recording(tmp_path / "rec", channels, rate)
    cfg = rig(16, tmp_path)
    decisions, status, _, _, _, messages, _ = run_session(bundle, rec, cfg, tmp_path, speed=None)
    assert status["state"] == "stopped" and status["failure"] is None
    assert expect in status["stream_unfit"]
    assert any(f"waiting for one that does: {expect}" in m for m in messages)
    assert status["counters"]["blocks"] == 0
    # the one onset it saw still gets its one decision, when the daemon stops
    assert (
        [d["status"] for d in decisions]
        == ["degraded: shutdown"]
        == ["degraded: shutdown"] * status["counters"]["onsets"]
    )


def test_rig_config_that_does_not_fit_the_bundle_is_refused(bundle, tmp_path):
    from rtdecode.pipeline import ContractError

    with pytest.raises(ContractError, match="channel count: bundle 16, rig config 384"):
        Daemon(rig(384, tmp_path), bundle, tmp_path / "x.jsonl")


@pytest.mark.parametrize(
    ("section", "change", "expect"),
    [
        ("trials", {"ttl_line": 3}, "TTL line of onsets: bundle 0, rig config 3"),
        # the bundle's alone: a rig config that repeats them is refused before any bundle is read
        ("sorting", {"highpass_hz": 250.0}, "sorting.highpass_hz: the decoder bundle owns the preprocessing"),
        ("trials", {"response_window_ms": [0.0, 200.0]}, "trials.response_window_ms: the decoder bundle owns"),
    ],
)
def test_serve_refuses_a_rig_config_that_breaks_the_contract(bundle, tmp_path, section, change, expect):
    import tomllib

    base = tomllib.loads((Path(rig_configs.__file__).parent / "replay_local.toml").read_text())
    base["stream"]["channel_count"] = 16
    base[section] = {**base.get(section, {}), **change}
    base["outputs"]["decision_log_dir"] = str(tmp_path)
    path = tmp_path / "rig.toml"
    path.write_text(_toml(base))
    proc = subprocess.run(
        [sys.executable, "-m", "rtdecode", "serve", "--rig", str(path), "--bundle", str(bundle)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert expect in proc.stderr and "Traceback" not in proc.stderr


def _toml(data: dict) -> str:
    """A two-level TOML writer (enough for rig configs)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return repr(v)

    lines = [f"{k} = {value(v)}" for k, v in data.items() if v is not None and not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{kk} = {value(vv)}" for kk, vv in v.items() if vv is not None]
    return "\n".join(lines) + "\n"


def test_an_internal_error_in_the_worker_is_counted_with_its_traceback_and_the_worker_goes_on(bundle, tmp_path):
    from rtdecode.stream.items import BlockItem

    messages = []
    d = Daemon(rig(16, tmp_path), bundle, tmp_path / "d.jsonl", log=messages.append)
    d.start()
    try:
        d.inject(BlockItem(0, np.zeros((700, 3), np.float32), time.monotonic_ns()))  # wrong shape: a bug upstream
        d.inject(BlockItem(0, np.zeros((700, 16), np.float32), time.monotonic_ns()))
        deadline = time.monotonic() + 20
        while d.pipeline.samples_processed < 700 and time.monotonic() < deadline:
            time.sleep(0.05)
        st = d.status()
    finally:
        d.stop()
        d.wait()
    assert st["counters"]["internal_errors"] == 1 and st["counters"]["malformed"] == 0
    assert st["state"] == "running" and d.pipeline.samples_processed == 700
    (msg,) = [m for m in messages if "internal error" in m]
    assert "BlockItem" in msg and "Traceback (most recent call last)" in msg
