"""Is the stream the one the bundle was built for? Judged on sustained evidence, never one message.

One stray message -- a stranger's PUB on the data port, another sample rate, channel 33 of a
32-channel rig -- or one message lost at start is counted and dropped by the assembler; it never
stops the daemon. Only when the stream *stays* wrong (``UNFIT_BLOCKS`` blocks' worth of messages
that do not fit, or that many incomplete blocks in a row, with no complete block between) is it
declared unfit, with the reason naming both values; the daemon then waits, visibly, and resumes
as soon as a block that fits is assembled.
"""

from __future__ import annotations

from rtdecode.stream.continuity import Anomaly, AnomalyKind
from rtdecode.stream.protocol import DataMessage

#: How many blocks' worth of evidence declare a stream unfit.
UNFIT_BLOCKS = 3


def describe_streams(streams: dict) -> str:
    """``'Neuropix-PXI-100.ProbeA-AP' (32 ch, 30000 Hz)``, for every stream on offer."""
    return ", ".join(f"{name!r} ({v['channels']} ch, {v['sample_rate']:g} Hz)" for name, v in streams.items()) or "none"


class StreamFit:
    def __init__(self, n_channels: int, sample_rate: float, streams_seen: dict | None = None) -> None:
        self.streams_seen = streams_seen if streams_seen is not None else {}  # the assembler's, read live
        self.n_channels = int(n_channels)
        self.sample_rate = float(sample_rate)  # sample rates are compared by the assembler (rates_agree)
        self.unfit_reason: str | None = None  # set while the stream is declared unfit
        self.last_unfit_reason: str | None = None  # the latest declaration, kept after recovery
        self.declarations = 0
        self._bad_messages = 0
        self._incomplete = 0
        self._channels: set[int] = set()  # distinct channel_nums since the last complete block
        self._reason: str | None = None

    def on_data(self, msg: DataMessage, anomalies: list[Anomaly], block_complete: bool) -> str | None:
        """Account one data message; returns ``"unfit"`` or ``"fit"`` when the verdict changes."""
        if block_complete:
            self._bad_messages = self._incomplete = 0
            self._channels.clear()
            if self.unfit_reason is not None:
                self.unfit_reason = None
                return "fit"
            return None
        self._channels.add(msg.channel_num)
        for a in anomalies:
            if a.kind is AnomalyKind.WRONG_SAMPLE_RATE:
                self._bad_messages += 1
                self._reason = (
                    f"stream sample rate {msg.sample_rate} Hz does not fit the bundle ({self.sample_rate} Hz)"
                )
            elif a.kind is AnomalyKind.WRONG_CHANNEL_COUNT:
                self._bad_messages += 1
                self._reason = (
                    f"stream has more than {self.n_channels} channels (channel_num {msg.channel_num}); "
                    f"the bundle expects {self.n_channels}"
                )
            elif a.kind is AnomalyKind.WRONG_STREAM:
                self._bad_messages += 1
                self._reason = (
                    f"{a.detail} (rig config [stream] stream_name); streams on offer: "
                    f"{describe_streams(self.streams_seen)}"
                )
            elif a.kind is AnomalyKind.INCOMPLETE_BLOCK:
                self._incomplete += 1
                n = len(self._channels)  # distinct channels the stream sends
                self._reason = (
                    f"stream has {n} channels, the bundle expects {self.n_channels}"
                    if n < self.n_channels
                    else "blocks keep arriving incomplete (messages lost upstream)"
                )
        return self._verdict()

    def on_falcon(self, msg, anomalies: list[Anomaly], block_complete: bool) -> str | None:
        """The same for a Falcon Output message (``rtdecode.stream.falcon.FalconMessage``): one
        message is a whole block, so one refused message weighs a block's worth of evidence."""
        if block_complete:
            return self.on_data(None, anomalies, True)
        for a in anomalies:
            if a.kind is AnomalyKind.WRONG_SAMPLE_RATE:
                self._reason = (
                    f"stream sample rate {msg.sample_rate} Hz does not fit the bundle ({self.sample_rate} Hz)"
                )
            elif a.kind is AnomalyKind.WRONG_CHANNEL_COUNT:
                self._reason = f"stream has {msg.n_channels} channels, the bundle expects {self.n_channels}"
            elif a.kind is AnomalyKind.WRONG_STREAM:
                self._reason = (
                    f"{a.detail} (rig config [stream] stream_name); streams on offer: "
                    f"{describe_streams(self.streams_seen)}"
                )
            else:
                continue
            self._bad_messages += self.n_channels
        return self._verdict()

    def _verdict(self) -> str | None:
        sustained = self._bad_messages >= UNFIT_BLOCKS * self.n_channels or self._incomplete >= UNFIT_BLOCKS
        if sustained and self.unfit_reason is None:
            self.unfit_reason = self.last_unfit_reason = self._reason
            self.declarations += 1
            return "unfit"
        return None
