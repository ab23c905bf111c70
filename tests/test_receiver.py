"""The receiver process and its shared-memory ring: the ring's bookkeeping, cleanup of what dead
daemons left, and a receiver killed mid-run is replaced without losing the daemon."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from rtdecode.replay.replayer import Replayer

from rtdecode.daemon import Daemon
from rtdecode.stream.ring import SHM_DIR, BlockRing, remove_stale_segments, segment_name

from .test_online import rig
from .test_reliability import (  # noqa: F401 (short_recording: a fixture)
    ONSETS,
    assert_every_onset_accounted_for,
    short_recording,
    wait_for_onsets,
)


def test_ring_hands_blocks_over_in_order_refuses_when_full_and_wraps(tmp_path):
    name = segment_name("0123abcd")
    w = BlockRing(name, 3, 8, 2, create=True)
    try:
        r = BlockRing(name, 3, 8, 2, create=False)
        blocks = [np.full((5 + i, 2), i, np.float32) for i in range(5)]
        assert [w.write(100 * i, b, i) for i, b in enumerate(blocks[:3])] == [0, 1, 2]
        assert w.write(300, blocks[3], 3) is None and w.fill == 3  # full: refused, nothing overwritten
        first, view, arrival = r.view(0)
        assert (first, arrival) == (0, 0) and view.shape == (5, 2) and np.all(view == 0)
        assert np.shares_memory(view, r.data)  # read in place, not copied
        r.release(0)
        assert w.write(300, blocks[3], 3) == 3  # slot 0 again
        for seq in (1, 2, 3):
            first, view, _ = r.view(seq)
            assert first == 100 * seq and np.array_equal(view, blocks[seq])
            r.release(seq)
        assert w.fill == 0
        with pytest.raises(ValueError, match="does not fit a slot of 8"):
            w.write(0, np.zeros((9, 2), np.float32), 0)
        r.close()
    finally:
        w.close()
    assert not (SHM_DIR / name).exists()


def test_a_new_daemon_removes_the_rings_of_dead_ones_and_leaves_live_ones():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = SHM_DIR / segment_name("deadbeef", pid=dead.pid)
    live = SHM_DIR / segment_name("feedface")  # ours: alive
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    try:
        removed = remove_stale_segments()
        assert stale.name in removed and not stale.exists()
        assert live.exists() and live.name not in removed
    finally:
        live.unlink(missing_ok=True)
        stale.unlink(missing_ok=True)


def test_a_receiver_killed_mid_run_is_replaced_and_every_onset_decided_or_in_its_logged_gap(
    bundle,
    short_recording,  # noqa: F811
    tmp_path,
):
    cfg = rig(16, tmp_path)
    log = tmp_path / "d.jsonl"
    d = Daemon(cfg, bundle, log, log=lambda *_: None)
    d.start()
    ring = SHM_DIR / d.receiver.ring.name
    rep = Replayer(short_recording, cfg.stream.data_port, speed=1.0, wait_for_heartbeat_s=10)
    th = threading.Thread(target=rep.run)
    th.start()
    try:
        wait_for_onsets(d, 5)
        first_pid = d.receiver.pid
        os.kill(first_pid, signal.SIGKILL)
        at_kill = d.pipeline.counters()["onsets"]
        # status while the replay still runs: replaced, and onsets flowing again through the new receiver
        st = d.status()
        while th.is_alive() and not (
            st["counters"]["receiver_restarts"] == 1 and d.pipeline.counters()["onsets"] >= at_kill + 3
        ):
            time.sleep(0.02)
            st = d.status()
        th.join()
    finally:
        rep.stop()
        th.join()
        d.stop()
        d.wait()
    assert st["counters"]["receiver_restarts"] == 1 and st["receiver"]["pid"] != first_pid and st["receiver"]["alive"]
    assert st["state"] == "running" and st["counters"]["internal_errors"] == 0, st["state"]
    records = [json.loads(x) for x in log.read_text().splitlines()]
    decisions = [r for r in records if "seq" in r]
    onsets = [r["onset_sample"] for r in decisions]
    assert len(onsets) == len(set(onsets)) and set(onsets) <= set(int(x) for x in ONSETS)
    # the onsets after the replacement was connected are decided again; at least the first ones were ok
    assert [r["status"] for r in decisions[:4]] == ["ok"] * 4
    # the span the dead receiver took with it is in the log, and every onset not decided lies inside it
    gaps = [r for r in records if r.get("event") == "gap"]
    assert [g["cause"] for g in gaps] == ["receiver replaced"] and gaps[0]["onsets_may_be_missing"]
    assert_every_onset_accounted_for(records, ONSETS, stream_s=6.0)
    # the counters survive the replacement: the stop record counts what both processes received
    assert d.receiver_totals.processes == 2
    assert records[-1]["stream_s"]["received"] > 6.0 - gaps[0]["seconds"] - 1.0
    assert not ring.exists()  # a clean stop leaves no shared memory behind
