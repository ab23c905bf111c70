"""The ZMQ Interface wire format: byte-exact headers, parsing, block assembly and continuity."""

import numpy as np
import pytest

from rtdecode.degraded import Degraded
from rtdecode.stream.assembler import BlockAssembler
from rtdecode.stream.protocol import (
    BlockFramer,
    DataMessage,
    ProtocolError,
    TtlMessage,
    data_frames,
    juce_double,
    parse_frames,
    ttl_frames,
)

# Built by hand from reference/openephys.md 1.4-1.6 (JUCE JSON::toString: 2-space indent, CRLF,
# insertion order, integral doubles with ".0", no trailing newline).
EXPECTED_DATA_HEADER = (
    b'{\r\n  "message_num": 1,\r\n  "type": "data",\r\n  "content": {\r\n    "stream": "ProbeA-AP",\r\n'
    b'    "channel_num": 0,\r\n    "num_samples": 697,\r\n    "sample_num": 12345,\r\n'
    b'    "sample_rate": 30000.0\r\n  },\r\n  "data_size": 2788,\r\n  "timestamp": 1700000000000\r\n}'
)
EXPECTED_TTL_HEADER = (
    b'{\r\n  "message_num": 7,\r\n  "type": "event",\r\n  "content": {\r\n    "stream": "ProbeA-AP",\r\n'
    b'    "source_node": 100,\r\n    "type": 3,\r\n    "sample_num": 12400\r\n  },\r\n  "data_size": 10,\r\n'
    b'  "timestamp": 1700000000001\r\n}'
)


def test_data_message_is_byte_exact():
    x = np.arange(697, dtype=np.float32)
    frames = data_frames(1, "ProbeA-AP", 0, x, 12345, 30000.0, 1700000000000)
    assert frames[0] == b"DATA\x00"
    assert frames[1] == EXPECTED_DATA_HEADER
    assert frames[2] == x.astype("<f4").tobytes()


def test_ttl_message_is_byte_exact():
    frames = ttl_frames(7, "ProbeA-AP", 100, 12400, line=0, state=1, word=1, timestamp_ms=1700000000001)
    assert frames[0] == b"EVENT\x00"
    assert frames[1] == EXPECTED_TTL_HEADER
    assert frames[2] == bytes([0, 1]) + (1).to_bytes(8, "little")


def test_channel_name_goes_between_channel_num_and_num_samples():
    h = data_frames(3, "S", 2, np.zeros(4, np.float32), 0, 30000.0, None, "CH3")[1].decode()
    assert '"channel_num": 2,\r\n    "channel_name": "CH3",\r\n    "num_samples": 4' in h
    assert "timestamp" not in h


@pytest.mark.parametrize(
    ("x", "text"), [(30000.0, "30000.0"), (2500, "2500.0"), (0.25, "0.25"), (1e7, "1.0e7"), (29999.5, "29999.5")]
)
def test_juce_doubles(x, text):
    assert juce_double(x) == text


def test_parse_round_trip_and_tolerates_optional_fields():
    x = np.random.default_rng(0).normal(size=50).astype(np.float32)
    msg = parse_frames(data_frames(9, "S", 3, x, 100, 30000.0, None, "CH4"))
    assert isinstance(msg, DataMessage) and msg.message_num == 9 and msg.channel_num == 3
    np.testing.assert_array_equal(msg.samples, x)
    ttl = parse_frames(ttl_frames(10, "S", 104, 150, 2, 0, 0))
    assert isinstance(ttl, TtlMessage) and (ttl.line, ttl.state, ttl.sample_num) == (2, 0, 150)


@pytest.mark.parametrize(
    ("frames", "why"),
    [
        ([b"DATA\x00"], "expected 3 frames"),
        ([b"DATA", b"{}", b""], "unknown envelope"),
        ([b"DATA\x00", b"{ not json", b""], "not valid JSON"),
        ([b"DATA\x00", b'{"type": "data"}', b""], "no 'message_num'"),
        (
            [
                b"DATA\x00",
                b'{"message_num": 1, "type": "data", "content": {"num_samples": 4}, "data_size": 16}',
                b"\x00" * 8,
            ],
            "payload is 8 bytes",
        ),
        (
            [
                b"EVENT\x00",
                b'{"message_num": 1, "type": "event", "content": {"type": 3, "stream": "S", '
                b'"source_node": 1, "sample_num": 5}, "data_size": 10}',
                b"\x00" * 4,
            ],
            "TTL payload is 4",
        ),
        ([b"DATA\x00", b'{"message_num": "1", "type": "data"}', b""], "expected an integer"),
    ],
)
def test_malformed_messages_say_what_is_wrong(frames, why):
    with pytest.raises(ProtocolError, match=why):
        parse_frames(frames)


def _blocks(n_blocks, n_ch=4, n=10, start=1000, first_num=1):
    num = first_num
    for b in range(n_blocks):
        for c in range(n_ch):
            yield parse_frames(data_frames(num, "S", c, np.full(n, b * 10 + c, np.float32), start + b * n, 30000.0))
            num += 1


def test_assembly_in_order_gives_whole_blocks():
    a = BlockAssembler(4, "S", 30000.0)
    out = []
    for m in _blocks(3):
        block, anomalies = a.on_data(m, 0)
        assert not anomalies
        if block is not None:
            out.append((block.sample_num, block.data.copy()))
    assert [s for s, _ in out] == [1000, 1010, 1020]
    np.testing.assert_array_equal(out[1][1][0], [10, 11, 12, 13])


def test_lost_duplicate_and_restart_are_detected():
    msgs = list(_blocks(4))
    a = BlockAssembler(4, "S", 30000.0)
    kinds = []
    stream = msgs[:5] + msgs[6:9] + [msgs[8]] + msgs[9:]  # lose message 6, duplicate message 9
    for m in stream:
        _, anomalies = a.on_data(m, 0)
        kinds += [x.kind for x in anomalies]
    assert "message_gap" in kinds and "duplicate" in kinds and "incomplete_block" in kinds
    assert a.counters["lost_messages"] == 1 and a.counters["duplicates"] == 1
    assert a.counters["blocks"] == 3  # block 2 (sample 1010) never completed
    for m in _blocks(1, start=0, first_num=1):  # acquisition restarted
        _, anomalies = a.on_data(m, 0)
        kinds += [x.kind for x in anomalies]
    assert "restart" in kinds and a.counters["restarts"] == 1


def test_sample_gap_is_reported_with_its_span():
    msgs = list(_blocks(1, start=1000)) + list(_blocks(1, start=1500, first_num=5))
    a = BlockAssembler(4, "S", 30000.0)
    gaps = [x for m in msgs for x in a.on_data(m, 0)[1] if x.kind == "sample_gap"]
    assert len(gaps) == 1 and (gaps[0].start_sample, gaps[0].end_sample) == (1010, 1500)


@pytest.mark.parametrize("channel_name", [None, "CH7"])
@pytest.mark.parametrize("timestamp", [None, 0, 1732246800123])
def test_block_framer_is_byte_identical_to_data_frames(channel_name, timestamp):
    framer = BlockFramer("ProbeA-AP", 30000.0)
    rng = np.random.default_rng(0)
    for message_num, channel, n, sample in [(1, 0, 700, 0), (12345, 383, 1, 2**40), (7, 6, 1024, 99)]:
        x = rng.normal(size=n).astype(np.float32)
        want = data_frames(message_num, "ProbeA-AP", channel, x, sample, 30000.0, timestamp, channel_name)
        got = framer.frames(message_num, channel, x.tobytes(), n, sample, timestamp, channel_name)
        assert got == want


def test_one_continuity_check_judges_message_numbers_for_every_protocol():
    from rtdecode.stream.continuity import STREAM_COUNTERS, AnomalyKind, check_message_num

    counters, found = dict.fromkeys(STREAM_COUNTERS, 0), []
    assert check_message_num(counters, None, 7, None, 100, found) == "next"
    assert check_message_num(counters, 7, 8, 100, 100, found) == "next" and found == []
    assert check_message_num(counters, 8, 11, 1000, 1696, found, "message_id", "block(s)") == "gap"
    gap = found[-1]
    assert (gap.kind, gap.start_sample, gap.end_sample, gap.data_end_unknown) == ("message_gap", 1000, 1697, True)
    assert gap.detail == "2 block(s) lost (message_id 8 -> 11)" and counters["lost_messages"] == 2
    assert check_message_num(counters, 11, 11, 2000, 2000, found) == "duplicate"
    assert check_message_num(counters, 11, 1, 2000, 0, found) == "restart"
    assert [a.kind for a in found] == [AnomalyKind.MESSAGE_GAP, AnomalyKind.DUPLICATE, AnomalyKind.RESTART]
    assert (counters["message_gaps"], counters["duplicates"], counters["restarts"]) == (1, 1, 1)
    assert {k for k in AnomalyKind if k.loses_data} == {"message_gap", "sample_gap", "incomplete_block"}
    assert Degraded.of_anomaly(AnomalyKind.INCOMPLETE_BLOCK) is Degraded.INCOMPLETE_BLOCK
    with pytest.raises(ValueError, match="loses no data"):
        Degraded.of_anomaly(AnomalyKind.DUPLICATE)
