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
from rtdecode.stream import sources
from rtdecode.stream.continuity import AnomalyKind
from rtdecode.stream.items import AnomaliesItem, LogItem, LostItem, ReceiverCounters
from rtdecode.stream.protocol import data_frames, ttl_frames
from rtdecode.stream.receiver import Receiver, ReceiverSpec
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


def _feed_spec(ring_name: str, channels: int) -> ReceiverSpec:
    return ReceiverSpec(
        host="127.0.0.1",
        data_port=1,  # never connected: the test feeds frames by hand
        channel_count=channels,
        stream_name="example_data",
        sample_rate=30000.0,
        channel_numbers=None,
        ring_name=ring_name,
        ring_slots=2,
        slot_samples=128,
        events_address="",
        parent_pid=os.getpid(),
        protocol=sources.default().name,
        protocol_module="",
    )


def test_the_receiver_is_fed_frames_without_sockets_and_says_what_it_made_of_them():
    """The receiver's whole judgement -- parse, gate, assemble, ring, lost spans, counters -- driven
    frame by frame with no socket: a TTL, two whole blocks, a block missing a channel's message, a
    stray with an absurd sample number, a malformed message, and a block the full ring refuses."""
    channels, n = 4, 100
    name = segment_name("feed0001")
    ring = BlockRing(name, 2, 128, channels, create=True)
    items: list = []
    receiver = Receiver(_feed_spec(name, channels), send=items.append)
    rng = np.random.default_rng(7)
    blocks = [rng.normal(0, 50, (n, channels)).astype(np.float32) for _ in range(4)]
    num = iter(range(1, 1000))

    def feed_block(b: int, skip_channel: int | None = None) -> None:
        for c in range(channels):
            m = next(num)
            if c != skip_channel:
                receiver.feed(data_frames(m, "example_data", c, blocks[b][:, c], b * n, 30000.0), now_ns=b)

    try:
        receiver.feed(ttl_frames(next(num), "example_data", 100, 5, 0, 1, 1), now_ns=0)
        feed_block(0)
        feed_block(1)
        receiver.feed(data_frames(next(num), "example_data", 0, blocks[2][:, 0], 10**12, 30000.0))  # a stray
        feed_block(2, skip_channel=1)  # a message lost: the block is incomplete
        receiver.feed([b"not", b"a message"])  # malformed
        feed_block(3)  # complete, but the ring is full (nobody released a slot): a lost span
        receiver.flush()
    finally:
        receiver.close()

    kinds = [type(i).__name__ for i in items]
    assert kinds[:3] == ["TtlItem", "RingBlockItem", "RingBlockItem"]
    assert (items[0].line, items[0].state, items[0].sample) == (0, 1, 5)
    try:
        for seq in (0, 1):
            first, view, arrival = ring.view(seq)
            assert (first, arrival) == (seq * n, seq) and np.array_equal(view, blocks[seq])
    finally:
        ring.close()
    anomalies = [a for i in items if isinstance(i, AnomaliesItem) for a in i.anomalies]
    assert {a.kind for a in anomalies} == {AnomalyKind.MESSAGE_GAP, AnomalyKind.INCOMPLETE_BLOCK}
    assert all(2 * n <= a.start_sample < 3 * n for a in anomalies)  # only block 2's span
    lost = [i for i in items if isinstance(i, LostItem)]
    assert [(x.start, x.end) for x in lost] == [(3 * n, 4 * n)]
    assert any(isinstance(i, LogItem) and "malformed" in i.text for i in items)
    final = items[-1]
    assert isinstance(final, ReceiverCounters) and final.final
    c = final.counters
    assert (c["strays"], c["malformed"], c["overruns"], c["internal_errors"]) == (1, 1, 1, 0)
    assert final.samples_received == 3 * n  # blocks 0, 1 and 3 were whole; 3 found no room
