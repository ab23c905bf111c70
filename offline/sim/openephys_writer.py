"""Write an Open Ephys GUI 1.0 Binary-format recording (reference/openephys.md section 4).

The layout is what a real Record Node writes, and what both readers require:
``<root>/Record Node <id>/experiment1/recording1/`` with ``structure.oebin``,
``sync_messages.txt``, ``continuous/<Proc>-<id>.<stream>/{continuous.dat, sample_numbers.npy,
timestamps.npy}`` and ``events/<Proc>-<id>.<stream>/TTL/{states, sample_numbers, timestamps,
full_words}.npy``. Voltage is stored as int16 with a per-channel ``bit_volts`` (uV per bit),
converted like the GUI does: ``round(clip(x / bit_volts, +-32767))``. TTL ``states`` are signed
1-based lines (``+(line+1)`` rising, ``-(line+1)`` falling) while lines are 0-based everywhere
else (the wire, the rig config).

Continuous data are appended chunk by chunk, so recordings larger than memory can be written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GUI_VERSION = "1.0.1"
#: Neuropixels 1.0 AP band in the Neuropix-PXI plugin: 0.195 uV per bit.
NEUROPIXELS_AP_BIT_VOLTS = 0.19499999284744263


def juce_json(obj) -> str:
    """JSON as JUCE's ``JSON::toString`` writes it: 2-space indent, CRLF line ends."""
    return json.dumps(obj, indent=2).replace("\n", "\r\n")


def to_int16(x_uv: np.ndarray, bit_volts: np.ndarray) -> np.ndarray:
    """The GUI's float -> int16 conversion: round(clip(x / bit_volts, -32767, 32767))."""
    return np.rint(np.clip(x_uv / bit_volts, -32767, 32767)).astype("<i2")


class BinaryRecordingWriter:
    """Writes one recording of one continuous stream plus its TTL events.

    Use as a context manager, or call :meth:`close`. ``append`` takes float uV blocks shaped
    (samples, channels)."""

    def __init__(
        self,
        root: str | Path,
        sample_rate: float,
        n_channels: int,
        first_sample_number: int = 0,
        stream_name: str = "ProbeA-AP",
        processor_name: str = "Neuropix-PXI",
        processor_id: int = 100,
        record_node_id: int = 101,
        bit_volts: float | np.ndarray = NEUROPIXELS_AP_BIT_VOLTS,
        channel_names: list[str] | None = None,
        software_time_ms: int = 1_700_000_000_000,
    ) -> None:
        self.root = Path(root)
        self.sample_rate = float(sample_rate)
        self.n_channels = int(n_channels)
        self.first_sample_number = int(first_sample_number)
        self.stream_name = stream_name
        self.processor_name = processor_name
        self.processor_id = processor_id
        self.bit_volts = np.broadcast_to(np.asarray(bit_volts, dtype=np.float64), (self.n_channels,)).copy()
        self.channel_names = channel_names or [f"CH{i + 1}" for i in range(self.n_channels)]
        if len(self.channel_names) != self.n_channels:
            raise ValueError(f"{len(self.channel_names)} channel names for {self.n_channels} channels")
        self.software_time_ms = software_time_ms
        safe = processor_name.replace(" ", "_").replace("@", "_")
        self.folder_name = f"{safe}-{processor_id}.{stream_name}"
        self.record_node_dir = self.root / f"Record Node {record_node_id}"
        self.recording_dir = self.record_node_dir / "experiment1" / "recording1"
        self.continuous_dir = self.recording_dir / "continuous" / self.folder_name
        self.ttl_dir = self.recording_dir / "events" / self.folder_name / "TTL"
        self.continuous_dir.mkdir(parents=True, exist_ok=True)
        self.ttl_dir.mkdir(parents=True, exist_ok=True)
        self._dat = open(self.continuous_dir / "continuous.dat", "wb")  # noqa: SIM115
        self.n_samples = 0
        self._ttl_samples: list[np.ndarray] = []
        self._ttl_states: list[np.ndarray] = []
        self._closed = False

    def append(self, block_uv: np.ndarray) -> None:
        """Append a (samples, channels) block of float voltages in uV."""
        block = np.asarray(block_uv)
        if block.ndim != 2 or block.shape[1] != self.n_channels:
            raise ValueError(f"block must be (samples, {self.n_channels}), got {block.shape}")
        self._dat.write(to_int16(block, self.bit_volts).tobytes())
        self.n_samples += block.shape[0]

    def add_ttl(self, sample_numbers: np.ndarray, line: int, states: np.ndarray) -> None:
        """TTL events on a 0-based ``line``; ``states`` 1 = rising, 0 = falling."""
        sample_numbers = np.asarray(sample_numbers, dtype=np.int64)
        states = np.asarray(states)
        signed = np.where(states > 0, line + 1, -(line + 1)).astype(np.int16)
        self._ttl_samples.append(sample_numbers)
        self._ttl_states.append(signed)

    def close(self) -> Path:
        """Finish the files; returns the session root (the folder holding ``Record Node``)."""
        if self._closed:
            return self.root
        self._dat.close()
        sn = np.arange(self.first_sample_number, self.first_sample_number + self.n_samples, dtype=np.int64)
        np.save(self.continuous_dir / "sample_numbers.npy", sn)
        np.save(self.continuous_dir / "timestamps.npy", sn / self.sample_rate)
        ttl_sn = np.concatenate(self._ttl_samples) if self._ttl_samples else np.empty(0, np.int64)
        ttl_st = np.concatenate(self._ttl_states) if self._ttl_states else np.empty(0, np.int16)
        order = np.argsort(ttl_sn, kind="stable")
        ttl_sn, ttl_st = ttl_sn[order], ttl_st[order]
        np.save(self.ttl_dir / "sample_numbers.npy", ttl_sn)
        np.save(self.ttl_dir / "timestamps.npy", ttl_sn / self.sample_rate)
        np.save(self.ttl_dir / "states.npy", ttl_st)
        np.save(self.ttl_dir / "full_words.npy", _full_words(ttl_st))
        self._write_oebin()
        self._write_sync_messages()
        self._closed = True
        return self.root

    def __enter__(self) -> BinaryRecordingWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._dat.close()

    def _write_oebin(self) -> None:
        channels = [
            {
                "channel_name": name,
                "description": "Neuropixels AP band channel",
                "identifier": "",
                "history": f"{self.processor_name} -> Record Node",
                "bit_volts": float(bv),
                "units": "uV",
                "type": 0,
            }
            for name, bv in zip(self.channel_names, self.bit_volts, strict=True)
        ]
        oebin = {
            "GUI version": GUI_VERSION,
            "continuous": [
                {
                    "folder_name": self.folder_name + "/",
                    "sample_rate": self.sample_rate,
                    "source_processor_name": self.processor_name,
                    "source_processor_id": self.processor_id,
                    "stream_name": self.stream_name,
                    "recorded_processor": self.processor_name,
                    "recorded_processor_id": self.processor_id,
                    "num_channels": self.n_channels,
                    "channels": channels,
                }
            ],
            "events": [
                {
                    "folder_name": f"{self.folder_name}/TTL/",
                    "channel_name": f"{self.processor_name} TTL Input",
                    "description": "TTL events (stimulus onsets)",
                    "identifier": "",
                    "sample_rate": self.sample_rate,
                    "type": "int16",
                    "source_processor": self.processor_name,
                    "stream_name": self.stream_name,
                    "initial_state": 0,
                }
            ],
            "spikes": [],
        }
        (self.recording_dir / "structure.oebin").write_text(juce_json(oebin), encoding="utf-8")

    def _write_sync_messages(self) -> None:
        lines = [
            f"Software Time (milliseconds since midnight Jan 1st 1970 UTC): {self.software_time_ms}",
            f"Start Time for {self.processor_name} ({self.processor_id}) - {self.stream_name} "
            f"@ {self.sample_rate:g} Hz: {self.first_sample_number}",
        ]
        (self.recording_dir / "sync_messages.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode())


def _full_words(signed_states: np.ndarray) -> np.ndarray:
    """The TTL word after each event (bit ``line`` set while the line is high)."""
    words = np.zeros(len(signed_states), dtype=np.uint64)
    current = np.uint64(0)
    for i, s in enumerate(signed_states):  # events, not samples: thousands at most
        bit = np.uint64(1) << np.uint64(abs(int(s)) - 1)
        current = (current | bit) if s > 0 else (current & ~bit)
        words[i] = current
    return words
