"""Falcon Output messages -> blocks, TTL edges and continuity anomalies.

A Falcon message is already a whole block (all channels), so nothing is assembled across messages;
what the ZMQ Interface's :class:`~rtdecode.stream.assembler.BlockAssembler` checks is checked here
the same way, with the same counter and anomaly names, so the daemon treats both protocols alike:

- messages that are not ours (another stream, rate or channel count, more samples than a block can
  hold) are refused before they touch continuity;
- what would change the timeline passes the receiver's :class:`~rtdecode.stream.gate.StrayGate`
  first, as for the ZMQ Interface (this class offers it the same view: ``is_ours``,
  ``last_message_num``, ``current_sample``, ``expected_sample``), so one stray message never
  starts a new timeline;
- ``message_id`` continuity: a jump = blocks lost (their span is an anomaly), a repeat or step back
  = duplicate (dropped), back to 1 = acquisition restarted;
- ``sample_num`` continuity: each block starts where the previous one ended (a gap, or a restart
  when it goes back);
- TTL edges: the bits of ``event_codes`` that change from one sample to the next (the word before
  a block's first sample is the last one of the previous block; 0 at the start of an acquisition,
  as the plugin resets it) become (line, state, sample) events. Edges are few: the search is one
  vectorised XOR over the block, and only the samples where the word changes are visited.
"""

from __future__ import annotations

import numpy as np

from rtdecode.stream.assembler import Block
from rtdecode.stream.continuity import (
    STREAM_COUNTERS,
    Anomaly,
    AnomalyKind,
    check_message_num,
    check_sample_continuity,
    note_stream,
    rates_agree,
    stream_matches,
)
from rtdecode.stream.falcon import FALCON_TTL_LINES, FalconMessage


class FalconAssembler:
    def __init__(self, n_channels: int, stream_name: str | None, sample_rate: float, max_block: int = 1 << 16) -> None:
        self.n_channels = int(n_channels)
        self.stream_name = stream_name
        self.sample_rate = float(sample_rate)
        self.max_block = int(max_block)
        self.last_message_num: int | None = None
        self.expected_sample: int | None = None
        self.last_code = 0
        self.counters = dict.fromkeys(STREAM_COUNTERS, 0)
        self.streams_seen: dict[str, dict] = {}

    # -- the view the StrayGate judges continuity by (a Falcon message is a whole block) ------------
    def is_ours(self, msg: FalconMessage) -> bool:
        return (
            stream_matches(self.stream_name, msg.stream)
            and rates_agree(msg.sample_rate, self.sample_rate, truncated=True)
            and msg.n_channels == self.n_channels
            and msg.n_samples <= self.max_block
        )

    current_sample = None  # no block is ever half assembled
    skipping_sample = None

    def fits_block(self, msg: FalconMessage) -> bool:
        """Every message is a whole block: its shape was checked by :meth:`is_ours`."""
        return True

    def _refuse(self, msg: FalconMessage) -> Anomaly | None:
        span = (msg.sample_num, msg.sample_num + msg.n_samples)
        note_stream(self.streams_seen, msg.stream, msg.n_channels - 1, msg.sample_rate)
        if not stream_matches(self.stream_name, msg.stream):
            self.counters["wrong_stream"] += 1
            return Anomaly(AnomalyKind.WRONG_STREAM, *span, f"stream {msg.stream!r}, expected {self.stream_name!r}")
        if not rates_agree(msg.sample_rate, self.sample_rate, truncated=True):  # the plugin sends (int) sampleRate
            self.counters["wrong_sample_rate"] += 1
            return Anomaly(
                AnomalyKind.WRONG_SAMPLE_RATE,
                *span,
                f"sample rate {msg.sample_rate} Hz, expected {self.sample_rate} Hz",
            )
        if msg.n_channels != self.n_channels:
            self.counters["wrong_channel_count"] += 1
            return Anomaly(
                AnomalyKind.WRONG_CHANNEL_COUNT,
                *span,
                f"{msg.n_channels} channels in a block, expected {self.n_channels}",
            )
        if msg.n_samples > self.max_block:
            self.counters["oversized"] += 1
            return Anomaly(
                AnomalyKind.OVERSIZED,
                msg.sample_num,
                msg.sample_num + 1,
                f"{msg.n_samples} samples, more than {self.max_block}",
            )
        return None

    def on_message(
        self, msg: FalconMessage, arrival_ns: int
    ) -> tuple[Block | None, list[tuple[int, int, int]], list[Anomaly]]:
        """(block or None, TTL edges as (line, state, sample), anomalies)."""
        refused = self._refuse(msg)
        if refused is not None:
            return None, [], [refused]
        anomalies: list[Anomaly] = []
        self.counters["messages"] += 1
        num = msg.message_id
        action = check_message_num(
            self.counters, self.last_message_num, num, self.expected_sample, msg.sample_num, anomalies,
            "message_id", "block(s)",
        )  # fmt: skip
        if action == "duplicate":
            return None, [], anomalies
        if action == "restart":
            self.expected_sample = None
            self.last_code = 0
        self.last_message_num = num
        gap_reported = action == "gap"  # lost blocks already cover it
        if check_sample_continuity(self.counters, self.expected_sample, msg.sample_num, anomalies, gap_reported):
            self.last_code = 0
        ttls = self._edges(msg)
        self.expected_sample = msg.sample_num + msg.n_samples
        self.counters["blocks"] += 1
        return Block(msg.sample_num, msg.samples.T, arrival_ns), ttls, anomalies

    def _edges(self, msg: FalconMessage) -> list[tuple[int, int, int]]:
        codes = msg.event_codes
        if codes.size == 0:
            return []
        prev = np.empty(codes.size, np.uint16)
        prev[0] = self.last_code
        prev[1:] = codes[:-1]
        changed = np.flatnonzero(prev != codes)
        self.last_code = int(codes[-1])
        edges = []
        for i in changed:  # only where the word changes: a handful per block at most
            before, after = int(prev[i]), int(codes[i])
            diff = before ^ after
            for line in range(FALCON_TTL_LINES):
                if diff >> line & 1:
                    edges.append((line, after >> line & 1, msg.sample_num + int(i)))
        self.counters["ttl"] += len(edges)
        return edges
