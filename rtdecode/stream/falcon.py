"""The Open Ephys Falcon Output wire format: one FlatBuffers ``ContinuousData`` message per block.

Facts (open-ephys-plugins/falcon-output, ``Source/channel.fbs`` and ``FalconOutput::sendData``;
DESIGN.md section 5): a PUB socket (default port 3335) sends one single-frame message per GUI
block of the selected stream, a FlatBuffers table, fields in this order (vtable slots 0..8)::

    samples: [float]        all selected channels, channel-major (n_channels x n_samples)
    event_codes: [uint16]   per sample, the TTL word: bit L set while line L (0..15) is high
    stream: string          the stream's name
    n_channels: uint32
    n_samples: uint32
    sample_num: uint64      first sample of the block
    timestamp: double       host seconds (high-resolution ticks)
    message_id: uint64      counts messages from 1 per acquisition
    sample_rate: uint32     the stream's rate, as an integer

No heartbeat socket, no per-channel messages: 384 times fewer messages than the ZMQ Interface at
384 channels. Lines above 15 are not carried. The serialiser writes what the plugin writes (the
replayer uses it); the parser reads the fields with the ``flatbuffers`` runtime, views the two
vectors in place (no copy) and raises :class:`~rtdecode.stream.protocol.ProtocolError` naming
what is wrong for anything that is not such a table.
"""

from __future__ import annotations

from dataclasses import dataclass

import flatbuffers
import numpy as np
from flatbuffers import number_types as N
from flatbuffers.table import Table

from rtdecode.stream.protocol import ProtocolError

#: The plugin's default data port.
FALCON_DEFAULT_PORT = 3335
#: TTL lines the plugin carries in ``event_codes`` (it ignores lines above 15).
FALCON_TTL_LINES = 16
_N_FIELDS = 9


def _vt(slot: int) -> int:
    return 4 + 2 * slot


@dataclass(slots=True)
class FalconMessage:
    samples: np.ndarray  # (n_channels, n_samples) float32, a view of the message buffer
    event_codes: np.ndarray  # (n_samples,) uint16, a view (empty if the plugin sent none)
    stream: str
    n_channels: int
    n_samples: int
    sample_num: int
    timestamp: float
    message_id: int
    sample_rate: int

    # the names the ZMQ Interface's messages use, so one StrayGate judges both protocols
    @property
    def message_num(self) -> int:
        return self.message_id

    @property
    def num_samples(self) -> int:
        return self.n_samples


def serialise_continuous_data(
    samples: np.ndarray,
    event_codes: np.ndarray,
    stream: str,
    sample_num: int,
    message_id: int,
    sample_rate: float,
    timestamp: float = 0.0,
    builder: flatbuffers.Builder | None = None,
) -> bytes:
    """One Falcon Output message: ``samples`` is (n_channels, n_samples) float32 (channel-major, as
    the plugin flattens it), ``event_codes`` one uint16 per sample."""
    x = np.ascontiguousarray(samples, dtype="<f4")
    if x.ndim != 2:
        raise ValueError(f"samples must be (channels, samples), got shape {x.shape}")
    codes = np.ascontiguousarray(event_codes, dtype="<u2")
    n_ch, n_s = x.shape
    if codes.shape != (n_s,):
        raise ValueError(f"event_codes must hold one word per sample ({n_s}), got shape {codes.shape}")
    b = builder or flatbuffers.Builder(16 + x.nbytes + codes.nbytes + len(stream))
    b.Clear()
    v_samples = b.CreateNumpyVector(x.reshape(-1))
    v_codes = b.CreateNumpyVector(codes)
    v_stream = b.CreateString(stream)
    b.StartObject(_N_FIELDS)
    b.PrependUOffsetTRelativeSlot(0, v_samples, 0)
    b.PrependUOffsetTRelativeSlot(1, v_codes, 0)
    b.PrependUOffsetTRelativeSlot(2, v_stream, 0)
    b.PrependUint32Slot(3, n_ch, 0)
    b.PrependUint32Slot(4, n_s, 0)
    b.PrependUint64Slot(5, int(sample_num), 0)
    b.PrependFloat64Slot(6, float(timestamp), 0.0)
    b.PrependUint64Slot(7, int(message_id), 0)
    b.PrependUint32Slot(8, int(sample_rate), 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def parse_continuous_data(buf: bytes) -> FalconMessage:
    """Read one Falcon Output message; :class:`ProtocolError` for anything else."""
    if len(buf) < 8:
        raise ProtocolError(f"Falcon Output message of {len(buf)} bytes: too short to be a FlatBuffers table")
    try:
        root = flatbuffers.encode.Get(N.UOffsetTFlags.packer_type, buf, 0)
        t = Table(buf, root)

        def scalar(slot, flags, default=0):
            o = t.Offset(_vt(slot))
            return t.Get(flags, o + t.Pos) if o else default

        def vector(slot, flags):
            o = t.Offset(_vt(slot))
            return t.GetVectorAsNumpy(flags, o) if o else None

        n_ch = int(scalar(3, N.Uint32Flags))
        n_s = int(scalar(4, N.Uint32Flags))
        samples = vector(0, N.Float32Flags)
        codes = vector(1, N.Uint16Flags)
        o = t.Offset(_vt(2))
        stream = t.String(o + t.Pos).decode("utf-8") if o else ""
        msg = FalconMessage(
            samples=np.empty((0, 0), np.float32) if samples is None else samples,
            event_codes=np.empty(0, np.uint16) if codes is None else codes,
            stream=stream,
            n_channels=n_ch,
            n_samples=n_s,
            sample_num=int(scalar(5, N.Uint64Flags)),
            timestamp=float(scalar(6, N.Float64Flags, 0.0)),
            message_id=int(scalar(7, N.Uint64Flags)),
            sample_rate=int(scalar(8, N.Uint32Flags)),
        )
    except ProtocolError:
        raise
    except Exception as err:  # offsets pointing outside the buffer, bad UTF-8, ...
        raise ProtocolError(f"not a Falcon Output ContinuousData table ({type(err).__name__}: {err})") from None
    if msg.samples.size != n_ch * n_s:
        raise ProtocolError(
            f"Falcon Output samples: {msg.samples.size} values, expected n_channels x n_samples = {n_ch} x {n_s}"
        )
    if msg.event_codes.size not in (0, n_s):
        raise ProtocolError(f"Falcon Output event_codes: {msg.event_codes.size} words, expected n_samples = {n_s}")
    if msg.message_id < 1:
        raise ProtocolError(f"Falcon Output message_id {msg.message_id}: expected >= 1")
    msg.samples = msg.samples.reshape(n_ch, n_s)
    return msg
