"""The stray gate: a discontinuity waits for the next message; strays are dropped, real changes pass."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rtdecode.stream.assembler import BlockAssembler
from rtdecode.stream.gate import StrayGate
from rtdecode.stream.protocol import DataMessage, data_frames, parse_frames


def _msgs(n_blocks, n_ch=4, n=10, start=1000, first_num=1):
    num = first_num
    out = []
    for b in range(n_blocks):
        for c in range(n_ch):
            out.append(parse_frames(data_frames(num, "S", c, np.full(n, b, np.float32), start + b * n, 30000.0)))
            num += 1
    return out


def _run(msgs, n_ch=4):
    a = BlockAssembler(n_ch, "S", 30000.0)
    g = StrayGate(a)
    blocks, kinds = [], []
    for m in msgs:
        for x in g.admit(m):
            block, anomalies = a.on_data(x, 0)
            kinds += [y.kind for y in anomalies]
            if block is not None:
                blocks.append(block.sample_num)
    for x in g.flush():
        kinds += [y.kind for y in a.on_data(x, 0)[1]]
    return blocks, kinds, a, g


def _copy(m: DataMessage, **change) -> DataMessage:
    fields = {k: getattr(m, k) for k in DataMessage.__slots__}
    return DataMessage(**{**fields, **change})


def test_a_clean_stream_passes_untouched():
    blocks, kinds, _, g = _run(_msgs(5))
    assert blocks == [1000, 1010, 1020, 1030, 1040] and kinds == [] and g.counters == {"strays": 0, "reordered": 0}


def test_one_message_with_an_absurd_sample_number_is_a_stray_not_a_new_timeline():
    msgs = _msgs(6)
    stray = _copy(msgs[9], sample_num=10**12)  # injected before message 10, claiming its number
    blocks, kinds, a, g = _run(msgs[:9] + [stray] + msgs[9:])
    assert blocks == [1000, 1010, 1020, 1030, 1040, 1050]  # every block whole
    assert kinds == [] and g.counters["strays"] == 1 and a.counters["restarts"] == 0


def test_a_strangers_first_message_is_not_a_restart():
    msgs = _msgs(4)
    stranger = _copy(msgs[5], message_num=1, sample_num=0, channel_num=0)
    blocks, kinds, a, g = _run(msgs[:6] + [stranger] + msgs[6:])
    assert blocks == [1000, 1010, 1020, 1030] and kinds == [] and a.counters["restarts"] == 0
    assert g.counters["strays"] == 1


def test_a_real_restart_a_real_gap_and_a_duplicate_are_still_reported():
    msgs = _msgs(3)
    restarted = _msgs(2, start=0, first_num=1)
    lost = msgs[:5] + msgs[6:]  # message 6 lost
    dup = msgs[:3] + [msgs[2]] + msgs[3:]
    _, kinds, a, _ = _run(msgs + restarted)
    assert "restart" in kinds and a.counters["restarts"] == 1
    blocks, kinds, a, _ = _run(lost)
    assert "message_gap" in kinds and a.counters["lost_messages"] == 1 and blocks == [1000, 1020]
    blocks, kinds, a, _ = _run(dup)
    assert a.counters["duplicates"] == 1 and blocks == [1000, 1010, 1020] and "message_gap" not in kinds


def test_a_reordered_pair_loses_nothing():
    msgs = _msgs(3)
    swapped = msgs[:5] + [msgs[6], msgs[5]] + msgs[7:]
    blocks, kinds, _, g = _run(swapped)
    assert blocks == [1000, 1010, 1020] and kinds == [] and g.counters["reordered"] == 1


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-5, 5),  # message_num offset
            st.sampled_from([0, 10, -10, 10**9, -1000]),  # sample_num offset
            st.integers(-1, 5),  # channel_num
            st.integers(1, 20),  # num_samples
        ),
        max_size=60,
    )
)
def test_any_sequence_of_messages_never_raises(edits):
    """Fuzz: arbitrary message_num / sample_num / channel / size perturbations of a clean stream."""
    base = _msgs(15)
    msgs = []
    for i, (dn, ds, ch, n) in enumerate(edits):
        m = base[i % len(base)]
        msgs.append(
            _copy(m, message_num=max(0, m.message_num + dn), sample_num=max(0, m.sample_num + ds), channel_num=ch)
            if (dn, ds) != (0, 0)
            else m
        )
        if n != 10 and i % 7 == 0:
            msgs[-1] = _copy(msgs[-1], num_samples=n, samples=np.zeros(n, np.float32))
    blocks, _, a, _ = _run(msgs)
    assert all(b >= 0 for b in blocks)
    assert a.counters["blocks"] == len(blocks)


def test_an_oversized_message_is_refused_without_growing_the_buffer():
    a = BlockAssembler(4, "S", 30000.0, max_block=4096)
    before = a._buf.shape
    huge = parse_frames(data_frames(1, "S", 0, np.zeros(1 << 20, np.float32), 1000, 30000.0))
    block, anomalies = a.on_data(huge, 0)
    assert block is None and [x.kind for x in anomalies] == ["oversized"] and a.counters["oversized"] == 1
    assert a._buf.shape == before
    blocks, kinds, _, _ = _run(_msgs(2))
    assert blocks == [1000, 1010] and kinds == []
