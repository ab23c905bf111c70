"""Stream continuity, the same for every input protocol: what went wrong (an :class:`Anomaly` of an
:class:`AnomalyKind`, which says whether the kind loses data), the ``message_num`` and ``sample_num``
checks, whether a stream is ours (name, sample rate), and the counters an assembler keeps.

Each protocol's assembler (``assembler.py`` for the ZMQ Interface, ``falcon_assembler.py`` for
Falcon Output, a lab's own) calls these rather than writing them again, so a gap, a restart or a
duplicate is judged, named and counted alike whatever the wire.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class AnomalyKind(StrEnum):
    MESSAGE_GAP = "message_gap"  # message numbers jumped: messages lost (data and events)
    SAMPLE_GAP = "sample_gap"  # a block started after where the last one ended
    INCOMPLETE_BLOCK = "incomplete_block"  # a block's channels did not all arrive
    RESTART = "restart"  # numbers started again: a new segment, not a loss
    DUPLICATE = "duplicate"  # a repeat or step back: dropped, nothing lost
    WRONG_STREAM = "wrong_stream"  # refused: not ours (nothing of ours lost)
    WRONG_SAMPLE_RATE = "wrong_sample_rate"
    WRONG_CHANNEL_COUNT = "wrong_channel_count"
    OVERSIZED = "oversized"

    @property
    def loses_data(self) -> bool:
        """Samples of our stream in the anomaly's span were not seen whole."""
        return self in (AnomalyKind.MESSAGE_GAP, AnomalyKind.SAMPLE_GAP, AnomalyKind.INCOMPLETE_BLOCK)


@dataclass(slots=True)
class Anomaly:
    kind: AnomalyKind
    start_sample: int  # first affected sample (inclusive)
    end_sample: int  # end (exclusive)
    detail: str
    # Lost messages are revealed by the next message that came, which may be an event inside a block
    # that then arrives whole: the samples lost end where data resumes, not at end_sample.
    data_end_unknown: bool = False


RATE_TOLERANCE = 1e-6  # relative: the plugin writes its sample rate as float32
#: What an assembler counts, for either input protocol (the daemon's status reports them).
STREAM_COUNTERS = (
    "messages",
    "blocks",
    "ttl",
    "message_gaps",
    "lost_messages",
    "duplicates",
    "sample_gaps",
    "incomplete_blocks",
    "restarts",
    "wrong_stream",
    "wrong_channel_count",
    "wrong_sample_rate",
    "oversized",
)


def rates_agree(sent: float, expected: float, truncated: bool = False) -> bool:
    """Is a stream that says it runs at ``sent`` Hz the ``expected`` one? The one rule for every
    protocol: equal within float32 precision (the ZMQ Interface writes its rate as a float), or,
    ``truncated`` (Falcon Output sends ``(int) sampleRate``), equal to the expected rate truncated --
    29,999 for a 29,999.9 Hz stream, 30,000 for a 30 kHz one."""
    if truncated:
        expected = math.floor(expected + RATE_TOLERANCE * abs(expected))  # 29999.99999 is 30 kHz in float32
    return abs(sent - expected) <= RATE_TOLERANCE * max(abs(sent), abs(expected))


def stream_matches(expected: str | None, name: str) -> bool:
    """Does a stream called ``name`` fit the rig config's ``stream_name``?

    Equal names fit, and so does a name that is the configured one behind a source-processor
    prefix: the GUI's File Reader names a played-back stream after the recording's folder
    (``"Neuropix-PXI-100.ProbeA-AP"``) where the live probe's source calls it ``"ProbeA-AP"``, so
    ``stream_name = "ProbeA-AP"`` fits both (and the full name fits only the playback)."""
    return expected is None or name == expected or name.endswith("." + expected)


def note_stream(seen: dict, name: str, channel: int, sample_rate: float, cap: int = 16) -> None:
    """Remember a stream on offer (name -> channels seen, sample rate, messages), at most ``cap`` names
    (a hostile publisher cannot grow it without bound)."""
    entry = seen.get(name)
    if entry is None:
        if len(seen) >= cap:
            return
        entry = seen[name] = {"channels": 0, "sample_rate": float(sample_rate), "messages": 0}
    entry["channels"] = max(entry["channels"], int(channel) + 1)
    entry["sample_rate"] = float(sample_rate)
    entry["messages"] += 1


def check_sample_continuity(
    counters: dict, expected: int | None, sample_num: int, anomalies: list[Anomaly], gap_reported: bool = False
) -> bool:
    """A block starting at ``sample_num`` where ``expected`` was due: a step back is a restart, a step
    forward a sample gap (unless ``gap_reported``: lost messages already cover it). Counts and appends
    the anomaly; True for a restart."""
    if expected is None or sample_num == expected:
        return False
    if sample_num < expected:
        counters["restarts"] += 1
        detail = f"sample_num went back from {expected} to {sample_num}"
        anomalies.append(Anomaly(AnomalyKind.RESTART, sample_num, sample_num, detail))
        return True
    if not gap_reported:
        counters["sample_gaps"] += 1
        detail = f"{sample_num - expected} samples missing before sample {sample_num}"
        anomalies.append(Anomaly(AnomalyKind.SAMPLE_GAP, expected, sample_num, detail))
    return False


def check_message_num(
    counters: dict,
    last: int | None,
    num: int,
    expected_sample: int | None,
    at_sample: int,
    anomalies: list[Anomaly],
    field: str = "message_num",
    unit: str = "message(s)",
) -> str:
    """Message ``num`` after ``last`` (None: the first), found at ``at_sample``: ``"next"``, or
    ``"restart"`` (back to 1), ``"gap"`` (messages lost since ``expected_sample``; the span reaches
    the revealing message, and where its samples end is known only when data resumes), or
    ``"duplicate"`` (a repeat or step back: drop it). Counts and appends the anomaly."""
    if last is None or num == last + 1:
        return "next"
    if num == 1:
        counters["restarts"] += 1
        anomalies.append(Anomaly(AnomalyKind.RESTART, at_sample, at_sample, f"{field} restarted at 1 after {last}"))
        return "restart"
    if num > last + 1:
        counters["message_gaps"] += 1
        counters["lost_messages"] += num - last - 1
        start = expected_sample if expected_sample is not None else at_sample
        detail = f"{num - last - 1} {unit} lost ({field} {last} -> {num})"
        anomalies.append(Anomaly(AnomalyKind.MESSAGE_GAP, min(start, at_sample), at_sample + 1, detail, True))
        return "gap"
    counters["duplicates"] += 1
    anomalies.append(Anomaly(AnomalyKind.DUPLICATE, at_sample, at_sample, f"{field} {num} after {last}"))
    return "duplicate"
