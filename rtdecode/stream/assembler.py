"""Per-channel DATA messages -> one (samples, channels) block per ``sample_num``; continuity checks.

The plugin sends, per block, the TTL events and then one DATA message per channel in ascending
order, all with the same ``sample_num``. The assembler copies each channel into a preallocated
block buffer and emits the block when the last channel arrives. It tracks:

- ``message_num`` continuity (a jump = messages lost; a repeat or step back = duplicate/reorder);
- ``sample_num`` continuity (each block must start where the previous one ended);
- acquisition restarts (``message_num`` back to 1, or ``sample_num`` going backwards);
- incomplete blocks (a new ``sample_num`` before all channels arrived).

Each problem becomes an :class:`Anomaly` with the sample range it affects, so trials overlapping it
are published as degraded instead of being decoded as if whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
from rtdecode.stream.protocol import DataMessage, TtlMessage


@dataclass(slots=True)
class Block:
    sample_num: int
    data: np.ndarray  # (samples, channels) float32 (a view valid until the next block is emitted)
    arrival_ns: int  # monotonic time the block's last message arrived


class BlockAssembler:
    def __init__(
        self,
        n_channels: int,
        stream_name: str | None = None,
        sample_rate: float | None = None,
        max_block: int = 1 << 16,
        channel_numbers: list[int] | None = None,
    ) -> None:
        self.n_channels = int(n_channels)
        # The plugin sends only the channels selected in its mask, under their own numbers: the
        # block's column of each channel_num (0..n-1 when every channel is sent).
        numbers = list(range(self.n_channels)) if channel_numbers is None else [int(c) for c in channel_numbers]
        if len(numbers) != self.n_channels:
            raise ValueError(f"{len(numbers)} channel numbers for {self.n_channels} channels")
        self._column = {c: i for i, c in enumerate(numbers)}
        self.stream_name = stream_name
        self.sample_rate = sample_rate
        self.max_block = int(max_block)  # larger messages are refused, never allocated for
        self._buf = np.empty((self.max_block, self.n_channels), dtype=np.float32)
        self._cur_sample: int | None = None
        self._cur_n = 0
        self._next_channel = 0
        self._skip_sample: int | None = None  # rest of a block already reported incomplete
        self.last_message_num: int | None = None
        self.expected_sample: int | None = None  # where the next block should start
        self.counters = dict.fromkeys(STREAM_COUNTERS, 0)
        self.streams_seen: dict[str, dict] = {}  # every stream on offer: name -> channels, rate, messages

    def is_ours(self, msg: DataMessage | TtlMessage) -> bool:
        return stream_matches(self.stream_name, msg.stream)

    def _other_stream(self, msg: DataMessage | TtlMessage, anomalies: list[Anomaly], n_samples: int) -> None:
        """A message of another stream of the same publisher: refused, counted once. The plugin numbers
        the messages of all its streams in one sequence, so one that continues it keeps it going
        (no messages were lost for it)."""
        self.counters["wrong_stream"] += 1
        if self.last_message_num is not None and msg.message_num == self.last_message_num + 1:
            self.last_message_num = msg.message_num
        anomalies.append(
            Anomaly(
                "wrong_stream",
                msg.sample_num,
                msg.sample_num + n_samples,
                f"stream {msg.stream!r}, expected {self.stream_name!r}",
            )
        )

    @property
    def current_sample(self) -> int | None:
        """``sample_num`` of the block being assembled (None between blocks)."""
        return self._cur_sample

    @property
    def skipping_sample(self) -> int | None:
        """``sample_num`` of a block already reported incomplete, whose remaining channels are skipped."""
        return self._skip_sample

    def fits_block(self, msg: DataMessage | TtlMessage) -> bool:
        """``msg`` has the shape the block being assembled wants next: its next channel, as many
        samples as its other channels (or channel 0 of a new block). A copy of a real message with
        the real one's ``message_num`` but another channel or length is told apart by this."""
        if isinstance(msg, TtlMessage) or msg.sample_num == self._skip_sample:
            return True
        col = self._column.get(msg.channel_num)
        if col is None or msg.num_samples > self.max_block:
            return True  # refused and counted by the assembler before it touches continuity
        if self._cur_sample is None:
            return col == 0
        return col == self._next_channel and msg.num_samples == self._cur_n

    # -- message_num -------------------------------------------------------------------------
    def _check_message_num(self, num: int, anomalies: list[Anomaly], at_sample: int) -> bool:
        """False if the message must be ignored (duplicate / step back)."""
        self.counters["messages"] += 1
        action = check_message_num(
            self.counters, self.last_message_num, num, self.expected_sample, at_sample, anomalies
        )
        if action == "duplicate":
            return False
        if action == "restart":  # acquisition restarted
            self._reset_block()
            self.expected_sample = None
        self.last_message_num = num
        return True

    def _reset_block(self) -> None:
        self._cur_sample = None
        self._cur_n = 0
        self._next_channel = 0

    # -- messages ----------------------------------------------------------------------------
    def on_ttl(self, msg: TtlMessage) -> tuple[bool, list[Anomaly]]:
        """(whether the TTL belongs to our stream and is new, anomalies)."""
        anomalies: list[Anomaly] = []
        if not self.is_ours(msg):
            self._other_stream(msg, anomalies, 0)
            return False, anomalies
        if self._check_message_num(msg.message_num, anomalies, msg.sample_num):
            self.counters["ttl"] += 1
            return True, anomalies
        return False, anomalies

    def on_data(self, msg: DataMessage, arrival_ns: int) -> tuple[Block | None, list[Anomaly]]:
        anomalies: list[Anomaly] = []
        note_stream(self.streams_seen, msg.stream, msg.channel_num, msg.sample_rate)
        # Messages that are not ours are refused before they touch message_num or sample_num
        # continuity, so a stranger's message cannot fake a gap, a restart or a new timeline.
        if not self.is_ours(msg):
            self._other_stream(msg, anomalies, msg.num_samples)
            return None, anomalies
        if self.sample_rate is not None and not rates_agree(msg.sample_rate, self.sample_rate):
            self.counters["wrong_sample_rate"] += 1
            anomalies.append(
                Anomaly(
                    AnomalyKind.WRONG_SAMPLE_RATE,
                    msg.sample_num,
                    msg.sample_num + msg.num_samples,
                    f"sample rate {msg.sample_rate} Hz, expected {self.sample_rate} Hz",
                )
            )
            return None, anomalies
        col = self._column.get(msg.channel_num)
        if col is None:
            self.counters["wrong_channel_count"] += 1
            anomalies.append(
                Anomaly(
                    AnomalyKind.WRONG_CHANNEL_COUNT,
                    msg.sample_num,
                    msg.sample_num + msg.num_samples,
                    f"channel_num {msg.channel_num} is not one of the stream's {self.n_channels} channels",
                )
            )
            return None, anomalies
        if msg.num_samples > self.max_block:
            self.counters["oversized"] += 1
            anomalies.append(
                Anomaly(
                    AnomalyKind.OVERSIZED,
                    msg.sample_num,
                    msg.sample_num + 1,
                    f"{msg.num_samples} samples in one message, more than {self.max_block}",
                )
            )
            return None, anomalies
        if not self._check_message_num(msg.message_num, anomalies, msg.sample_num):
            return None, anomalies
        if self._skip_sample is not None:
            if msg.sample_num == self._skip_sample:
                return None, anomalies  # the rest of a block already reported incomplete
            self._skip_sample = None
        if self._cur_sample is not None and msg.sample_num != self._cur_sample:
            # A new block began before the previous one was complete.
            self.counters["incomplete_blocks"] += 1
            anomalies.append(
                Anomaly(
                    AnomalyKind.INCOMPLETE_BLOCK,
                    self._cur_sample,
                    self._cur_sample + self._cur_n,
                    f"block at sample {self._cur_sample} got {self._next_channel} of {self.n_channels} channels",
                )
            )
            self.expected_sample = self._cur_sample + self._cur_n
            self._reset_block()
        if self._cur_sample is None:
            if col != 0:
                # The block's first channels were lost: it can never be complete.
                self.counters["incomplete_blocks"] += 1
                anomalies.append(
                    Anomaly(
                        "incomplete_block",
                        msg.sample_num,
                        msg.sample_num + msg.num_samples,
                        f"block at sample {msg.sample_num} starts at channel {msg.channel_num}",
                    )
                )
                self.expected_sample = msg.sample_num + msg.num_samples
                self._skip_sample = msg.sample_num
                return None, anomalies
            self._start_block(msg, anomalies)
        elif col != self._next_channel or msg.num_samples != self._cur_n:
            self.counters["incomplete_blocks"] += 1
            anomalies.append(
                Anomaly(
                    AnomalyKind.INCOMPLETE_BLOCK,
                    self._cur_sample,
                    self._cur_sample + self._cur_n,
                    f"channel {msg.channel_num} arrived when {self._next_channel} was expected",
                )
            )
            self.expected_sample = self._cur_sample + self._cur_n
            self._skip_sample = self._cur_sample
            self._reset_block()
            return None, anomalies
        self._buf[: msg.num_samples, col] = msg.samples
        self._next_channel += 1
        if self._next_channel < self.n_channels:
            return None, anomalies
        block = Block(self._cur_sample, self._buf[: self._cur_n], arrival_ns)
        self.expected_sample = self._cur_sample + self._cur_n
        self.counters["blocks"] += 1
        self._reset_block()
        return block, anomalies

    def _start_block(self, msg: DataMessage, anomalies: list[Anomaly]) -> None:
        check_sample_continuity(self.counters, self.expected_sample, msg.sample_num, anomalies)
        self._cur_sample = msg.sample_num
        self._cur_n = msg.num_samples
        self._next_channel = 0
