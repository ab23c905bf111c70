"""The Open Ephys Falcon Output plugin as a stream source: one FlatBuffers message per block (all
channels, TTL lines as the bits of a per-sample event word), no heartbeat, every channel sent."""

from __future__ import annotations

from rtdecode.stream.falcon import FALCON_DEFAULT_PORT, FalconMessage, parse_continuous_data
from rtdecode.stream.falcon_assembler import FalconAssembler
from rtdecode.stream.fit import StreamFit
from rtdecode.stream.items import TtlItem
from rtdecode.stream.protocol import ProtocolError
from rtdecode.stream.sources import Assembled, StreamSource, register

NAME = "falcon-output"


class FalconOutputReader:
    copy_frames = False  # one large frame, read in place

    def __init__(self, spec) -> None:
        self.assembler = FalconAssembler(spec.channel_count, spec.stream_name, spec.sample_rate)

    def parse(self, frames: list) -> FalconMessage:
        if len(frames) != 1:
            raise ProtocolError(f"a Falcon Output message is one frame, got {len(frames)}")
        return parse_continuous_data(frames[0])

    def assemble(self, msg: FalconMessage, now_ns: int, fit: StreamFit) -> Assembled:
        block, edges, anomalies = self.assembler.on_message(msg, now_ns)
        ttls = [TtlItem(line, state, sample, now_ns) for line, state, sample in edges]
        return Assembled(block, ttls, anomalies, fit.on_falcon(msg, anomalies, block is not None))


SOURCE = register(
    StreamSource(
        name=NAME,
        summary="the Falcon Output plugin: one FlatBuffers message per block, TTL lines as bits",
        reader=FalconOutputReader,
        default_data_port=FALCON_DEFAULT_PORT,
    )
)
