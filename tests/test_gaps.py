"""The gap ledger: every span of stream not seen whole counted once, with its cause."""

import numpy as np
import pytest

from rtdecode.degraded import Degraded
from rtdecode.gaps import GapLedger
from tests.test_online import rig


def test_overlapping_reports_of_one_hole_count_once_and_lost_events_cost_no_samples():
    g = GapLedger(30000.0)
    a = g.add(1000, 4001, Degraded.MESSAGE_GAP, data_end=4000)  # lost messages up to the block at 4000, which came
    assert (a.start_sample, a.end_sample, a.samples_lost, a.onsets_may_be_missing) == (1000, 4001, 3000, True)
    assert g.add(1000, 4000, Degraded.DATA_GAP) is None  # the pipeline sees the same hole: nothing new
    assert g.covering_cause == "message gap"  # and names it by the receiver's cause
    b = g.add(3500, 5000, Degraded.RING_OVERRUN)  # overlaps the end: only its new samples count
    assert (b.start_sample, b.samples_lost, b.onsets_may_be_missing) == (4000, 1000, False)
    assert g.count == 2 and g.lost_s == pytest.approx(4000 / 30000)
    assert g.summary() == {
        "count": 2,
        "lost_s": round(4000 / 30000, 6),
        "lost_s_by_cause": {"message gap": 0.1, "ring overrun": round(1000 / 30000, 6)},
        "onsets_may_be_missing": True,
    }
    assert [x.cause for x in g.take_new()] == ["message gap", "ring overrun"] and g.take_new() == []


def test_a_new_segment_starts_its_own_sample_numbers():
    g = GapLedger(1000.0)
    g.add(500, 900, Degraded.RECEIVER_REPLACED)
    g.new_segment(2)
    gap = g.add(100, 300, Degraded.SAMPLE_GAP)  # sample numbers from an earlier origin: a new timeline, not covered
    assert gap.segment == 2 and gap.seconds == pytest.approx(0.2) and g.lost_s == pytest.approx(0.6)
    assert gap.record() == {
        "segment": 2,
        "start_sample": 100,
        "end_sample": 300,
        "seconds": 0.2,
        "cause": "sample gap",
        "onsets_may_be_missing": True,
    }


def test_lost_messages_revealed_by_an_event_lose_samples_only_up_to_where_data_resumes():
    """A TTL inside a block reveals the lost messages, and its block then comes whole: the samples
    lost end at that block's start, not at the TTL (CI once counted 624 samples both seen and lost)."""
    g = GapLedger(1000.0)
    g.open(2000, 4301, Degraded.MESSAGE_GAP)  # the TTL at 4300 revealed it
    assert g.take_new() == [] and g.lost_s == 0  # not counted before data resumes
    gap = g.settle(4000)  # the block at 4000 came whole
    assert (gap.start_sample, gap.end_sample, gap.samples_lost) == (2000, 4301, 2000)
    assert g.add(2000, 4000, Degraded.DATA_GAP) is None and g.covering_cause == "message gap"
    inc = g.add(4000, 5000, Degraded.INCOMPLETE_BLOCK)  # samples counted by their own range, not the events'
    assert (inc.start_sample, inc.samples_lost) == (4000, 1000)
    g.open(6000, 6001, Degraded.MESSAGE_GAP)
    g.new_segment(2)  # data never resumed in segment 1: the span is logged, its samples unknown
    assert [(x.cause, x.samples_lost) for x in g.take_new()] == [
        ("message gap", 2000),
        ("incomplete block", 1000),
        ("message gap", 0),
    ]
    assert g.lost_s == pytest.approx(3.0)


def test_the_pipeline_counts_every_sample_once_when_an_event_reveals_lost_messages(bundle, tmp_path):
    from rtdecode.bundle import Bundle
    from rtdecode.pipeline import OnlinePipeline

    cfg = rig(16, tmp_path)
    p = OnlinePipeline(Bundle.load(bundle), cfg, log=lambda *_: None)
    block = np.zeros((1000, 16), dtype=np.float32)
    for first in range(0, 12000, 1000):
        p.on_block(first, block, 0)
    # the messages of blocks 12000 and 13000 are lost; the TTL at 14300 reveals it before its block comes
    p.on_lost(12000, 14301, Degraded.MESSAGE_GAP, data_end_unknown=True)
    p.on_ttl(cfg.trials.ttl_line, 1, 14300)
    decisions = [d for first in range(14000, 40000, 1000) for d in p.on_block(first, block, 0)]
    assert p.samples_processed == 38000 and p.gaps.lost_s == pytest.approx(2000 / 30000)
    [gap] = p.gaps.take_new()
    assert (gap.cause, gap.start_sample, gap.end_sample, gap.samples_lost) == ("message gap", 12000, 14301, 2000)
    [decision] = decisions + p.finish(Degraded.SHUTDOWN)
    assert decision.onset_sample == 14300 and decision.reasons == ["message gap"]
