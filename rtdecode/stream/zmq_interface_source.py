"""The Open Ephys ZMQ Interface plugin as a stream source: one message per channel per block (three
frames: envelope, JSON header, samples), TTL events as messages of their own, a heartbeat REP
socket at ``data_port + 1``, and only the channels of its mask, under their own numbers."""

from __future__ import annotations

from rtdecode.stream.assembler import BlockAssembler
from rtdecode.stream.fit import StreamFit
from rtdecode.stream.items import TtlItem
from rtdecode.stream.protocol import DataMessage, TtlMessage, parse_frames
from rtdecode.stream.sources import Assembled, StreamSource, register

NAME = "zmq-interface"


class ZmqInterfaceReader:
    copy_frames = True  # three small frames: cheaper copied than pinned

    def __init__(self, spec) -> None:
        self.assembler = BlockAssembler(
            spec.channel_count, spec.stream_name, spec.sample_rate, channel_numbers=spec.channel_numbers
        )

    def parse(self, frames: list) -> DataMessage | TtlMessage | None:
        msg = parse_frames(frames)
        return msg if isinstance(msg, DataMessage | TtlMessage) else None  # spikes, text: not used here

    def assemble(self, msg: DataMessage | TtlMessage, now_ns: int, fit: StreamFit) -> Assembled:
        if isinstance(msg, TtlMessage):
            ours, anomalies = self.assembler.on_ttl(msg)
            ttls = [TtlItem(msg.line, msg.state, msg.sample_num, now_ns, msg.source_node)] if ours else []
            return Assembled(None, ttls, anomalies)
        block, anomalies = self.assembler.on_data(msg, now_ns)
        return Assembled(block, [], anomalies, fit.on_data(msg, anomalies, block is not None))


SOURCE = register(
    StreamSource(
        name=NAME,
        summary="the ZMQ Interface plugin: one message per channel per block, TTL events, a heartbeat",
        reader=ZmqInterfaceReader,
        default_data_port=5556,
        heartbeat=True,
        channel_mask=True,
    )
)
