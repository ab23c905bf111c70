"""A stream protocol that exists only for the tests: each message is a whole block as three frames
(a JSON header, the samples as float32 channel-major bytes, the TTL word per sample as uint16).
It is registered here, outside the library, as a lab's own source would be; whole blocks need no
assembly across messages, so it reuses the block-per-message assembler Falcon Output uses."""

from __future__ import annotations

import json

import numpy as np

from rtdecode.stream.falcon import FalconMessage
from rtdecode.stream.falcon_assembler import FalconAssembler
from rtdecode.stream.items import TtlItem
from rtdecode.stream.protocol import ProtocolError
from rtdecode.stream.sources import Assembled, StreamSource, register

NAME = "test-raw-blocks"


def frames_of(samples: np.ndarray, codes: np.ndarray, stream: str, sample_num: int, message_id: int, rate: float):
    """A (samples x channels) block as this protocol's frames."""
    header = {"stream": stream, "sample_num": sample_num, "message_id": message_id, "rate": rate}
    return [
        json.dumps(header).encode(),
        np.ascontiguousarray(samples.T, np.float32).tobytes(),
        codes.astype("<u2").tobytes(),
    ]


class RawBlockReader:
    copy_frames = True

    def __init__(self, spec) -> None:
        self.n_channels = spec.channel_count
        self.assembler = FalconAssembler(spec.channel_count, spec.stream_name, spec.sample_rate)

    def parse(self, frames: list) -> FalconMessage:
        if len(frames) != 3:
            raise ProtocolError(f"a raw block is 3 frames, got {len(frames)}")
        try:
            h = json.loads(frames[0])
            codes = np.frombuffer(frames[2], dtype="<u2")
            samples = np.frombuffer(frames[1], dtype=np.float32).reshape(-1, len(codes))
            return FalconMessage(
                samples, codes, h["stream"], len(samples), len(codes), int(h["sample_num"]), 0.0,
                int(h["message_id"]), int(h["rate"]),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError) as err:
            raise ProtocolError(f"raw block: {err}") from None

    def assemble(self, msg: FalconMessage, now_ns: int, fit) -> Assembled:
        block, edges, anomalies = self.assembler.on_message(msg, now_ns)
        ttls = [TtlItem(line, state, sample, now_ns) for line, state, sample in edges]
        return Assembled(block, ttls, anomalies, fit.on_falcon(msg, anomalies, block is not None))


SOURCE = register(
    StreamSource(name=NAME, summary="test-only: whole blocks as JSON + float32 + uint16 frames", reader=RawBlockReader,
                 default_data_port=7000)
)  # fmt: skip
