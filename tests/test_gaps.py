"""The gap ledger: every span of stream not seen whole counted once, with its cause."""

import pytest

from rtdecode.gaps import GapLedger


def test_overlapping_reports_of_one_hole_count_once_and_lost_events_cost_no_samples():
    g = GapLedger(30000.0)
    a = g.add(1000, 4001, "message gap", data_end=4000)  # lost messages up to the block at 4000, which came
    assert (a.start_sample, a.end_sample, a.samples_lost, a.onsets_may_be_missing) == (1000, 4001, 3000, True)
    assert g.add(1000, 4000, "data gap") is None  # the pipeline sees the same hole: nothing new
    assert g.covering_cause == "message gap"  # and names it by the receiver's cause
    b = g.add(3500, 5000, "ring overrun")  # overlaps the end: only its new part counts
    assert (b.start_sample, b.samples_lost, b.onsets_may_be_missing) == (4001, 999, False)
    assert g.count == 2 and g.lost_s == pytest.approx(3999 / 30000)
    assert g.summary() == {
        "count": 2,
        "lost_s": round(3999 / 30000, 6),
        "lost_s_by_cause": {"message gap": 0.1, "ring overrun": round(999 / 30000, 6)},
        "onsets_may_be_missing": True,
    }
    assert [x.cause for x in g.take_new()] == ["message gap", "ring overrun"] and g.take_new() == []


def test_a_new_segment_starts_its_own_sample_numbers():
    g = GapLedger(1000.0)
    g.add(500, 900, "receiver replaced")
    g.new_segment(2)
    gap = g.add(100, 300, "sample gap")  # sample numbers from an earlier origin: a new timeline, not covered
    assert gap.segment == 2 and gap.seconds == pytest.approx(0.2) and g.lost_s == pytest.approx(0.6)
    assert gap.record() == {
        "segment": 2,
        "start_sample": 100,
        "end_sample": 300,
        "seconds": 0.2,
        "cause": "sample gap",
        "onsets_may_be_missing": True,
    }
