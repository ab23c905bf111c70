"""An Open Ephys Binary recording as the stream the GUI would send: samples, TTLs, block sizes.

The replayer publishes it and the offline decoder (``rtdecode decode``) feeds it to the pipeline,
both in the same blocks (:func:`block_sizes`: fixed, or GUI-like variable sizes from a seed), so
a served and an offline-decoded recording see identical data.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rtdecode.errors import RecordingError

GUI_BLOCK_MEAN_S = 1024 / 44100  # the GUI's default audio callback period


def gui_block_samples(sample_rate: float) -> int:
    """Samples per block of the real GUI: its audio callback (1,024 frames at 44.1 kHz) in the stream's
    rate -- 696 at 30 kHz, every block (measured on GUI 1.0.1 playing a recording)."""
    return int(sample_rate * GUI_BLOCK_MEAN_S)


class RecordingSource:
    """The continuous stream and TTL events of one Open Ephys Binary recording."""

    def __init__(self, recording_dir: str | Path, stream_index: int = 0) -> None:
        from open_ephys.analysis import Session

        path = Path(recording_dir)
        try:
            session = Session(str(path))
            nodes = getattr(session, "recordnodes", None)
            recording = (nodes[0].recordings if nodes else session.recordings)[0]
            cont = recording.continuous[stream_index]
        except Exception as err:
            raise RecordingError(
                f"{path}: cannot read as an Open Ephys recording ({type(err).__name__}: {err})"
            ) from None
        meta = cont.metadata
        self.stream_name = meta.stream_name
        #: What the GUI's File Reader calls the stream when it plays this recording: the folder name,
        #: ``<source processor>-<node id>.<stream>``, e.g. ``Neuropix-PXI-100.ProbeA-AP``.
        self.file_reader_stream_name = f"{meta.source_node_name}-{meta.source_node_id}.{meta.stream_name}"
        self.source_node = int(meta.source_node_id)
        self.sample_rate = float(meta.sample_rate)
        self.n_channels = int(meta.num_channels)
        self.channel_names = list(meta.channel_names)
        self.bit_volts = np.asarray(meta.bit_volts, dtype=np.float32)
        self.samples = cont.samples  # int16 memmap (n, channels)
        self.sample_numbers = np.asarray(cont.sample_numbers, dtype=np.int64)
        ev = recording.events
        if ev is not None and len(ev):
            ev = ev[ev.stream_name == self.stream_name] if "stream_name" in ev else ev
            self.ttl_samples = ev.sample_number.to_numpy(np.int64)
            self.ttl_lines = ev.line.to_numpy(np.int64) - 1  # 1-based on disk -> 0-based on the wire
            self.ttl_states = ev.state.to_numpy(np.int64)
            order = np.argsort(self.ttl_samples, kind="stable")
            self.ttl_samples, self.ttl_lines, self.ttl_states = (
                a[order] for a in (self.ttl_samples, self.ttl_lines, self.ttl_states)
            )
        else:
            self.ttl_samples = self.ttl_lines = self.ttl_states = np.empty(0, np.int64)

    @property
    def n_samples(self) -> int:
        return len(self.sample_numbers)

    def blocks(
        self, block_samples: int | None = None, seed: int = 0, variable: bool = False
    ) -> Iterator[tuple[int, int, int, int]]:
        """``(i0, i1, t0, t1)`` per block: its sample rows ``[i0, i1)`` and the TTL events ``t0:t1``
        that go before it (those at or before its last sample) -- the one cut of a recording into
        blocks, which the replayer publishes and the offline decoder feeds to the pipeline."""
        i0 = t0 = 0
        for n in block_sizes(self.n_samples, self.sample_rate, block_samples, seed, variable):
            i1 = i0 + int(n)
            t1 = int(np.searchsorted(self.ttl_samples, self.sample_numbers[i1 - 1], side="right"))
            yield i0, i1, t0, t1
            i0, t0 = i1, t1

    def block_uv(self, i0: int, i1: int) -> np.ndarray:
        """Sample rows ``[i0, i1)`` in uV (samples x channels, float32)."""
        return self.samples[i0:i1].astype(np.float32) * self.bit_volts[None, :]


def block_sizes(
    n_samples: int, sample_rate: float, block_samples: int | None, seed: int = 0, variable: bool = False
) -> np.ndarray:
    """Block lengths covering the recording: ``block_samples`` each, by default the real GUI's
    (:func:`gui_block_samples`); ``variable``: sizes drawn from a seed within +-15 % of the GUI's
    period (a source whose blocks vary, to exercise block-size independence)."""
    if not variable:
        block_samples = block_samples or gui_block_samples(sample_rate)
        sizes = np.full(int(np.ceil(n_samples / block_samples)), block_samples, dtype=np.int64)
    else:
        mean = sample_rate * GUI_BLOCK_MEAN_S
        rng = np.random.default_rng(seed)
        sizes = np.round(rng.uniform(0.85, 1.15, int(n_samples / mean * 1.2) + 2) * mean).astype(np.int64)
    edges = np.concatenate([[0], np.cumsum(sizes)])
    edges = edges[edges < n_samples]
    return np.diff(np.concatenate([edges, [n_samples]]))
