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

import math
from dataclasses import dataclass

import numpy as np

from rtdecode.stream.protocol import DataMessage, TtlMessage

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
    the anomaly; True for a restart. Shared by both input protocols' assemblers."""
    if expected is None or sample_num == expected:
        return False
    if sample_num < expected:
        counters["restarts"] += 1
        detail = f"sample_num went back from {expected} to {sample_num}"
        anomalies.append(Anomaly("restart", sample_num, sample_num, detail))
        return True
    if not gap_reported:
        counters["sample_gaps"] += 1
        detail = f"{sample_num - expected} samples missing before sample {sample_num}"
        anomalies.append(Anomaly("sample_gap", expected, sample_num, detail))
    return False


@dataclass(slots=True)
class Block:
    sample_num: int
    data: np.ndarray  # (samples, channels) float32 (a view valid until the next block is emitted)
    arrival_ns: int  # monotonic time the block's last message arrived


@dataclass(slots=True)
class Anomaly:
    kind: str  # "message_gap", "duplicate", "sample_gap", "incomplete_block", "restart", "wrong_stream", ...
    start_sample: int  # first affected sample (inclusive)
    end_sample: int  # end (exclusive)
    detail: str
    # Lost messages are revealed by the next message that came, which may be an event inside a block
    # that then arrives whole: the samples lost end where data resumes, not at end_sample.
    data_end_unknown: bool = False


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
        last = self.last_message_num
        if last is None or num == last + 1:
            self.last_message_num = num
            return True
        if num == 1:  # acquisition restarted
            self.counters["restarts"] += 1
            anomalies.append(Anomaly("restart", at_sample, at_sample, f"message_num restarted at 1 after {last}"))
            self._reset_block()
            self.expected_sample = None
            self.last_message_num = num
            return True
        if num > last + 1:
            self.counters["message_gaps"] += 1
            self.counters["lost_messages"] += num - last - 1
            start = self.expected_sample if self.expected_sample is not None else at_sample
            anomalies.append(
                Anomaly(
                    "message_gap",
                    min(start, at_sample),
                    at_sample + 1,
                    f"{num - last - 1} message(s) lost (message_num {last} -> {num})",
                    data_end_unknown=True,
                )
            )
            self.last_message_num = num
            return True
        self.counters["duplicates"] += 1
        anomalies.append(Anomaly("duplicate", at_sample, at_sample, f"message_num {num} after {last}"))
        return False

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
                    "wrong_sample_rate",
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
                    "wrong_channel_count",
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
                    "oversized",
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
                    "incomplete_block",
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
                    "incomplete_block",
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
