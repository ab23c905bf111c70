"""The offline decoder: a recorded session through the one online pipeline, decisions to a log.

``rtdecode decode --bundle B RECORDING --out decisions.jsonl`` reads an Open Ephys recording
(``rtdecode.stream.recording``), cuts it into the blocks the replayer would send (GUI-like
variable sizes from the same seed, or a fixed size), feeds each block's TTLs and then the block to
:class:`~rtdecode.pipeline.OnlinePipeline`, and writes the daemon's record format (``start``,
every decision with its ``seq``, ``stop``). Served at real time and decoded offline, a recording
gets the same decision for every trial.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from rtdecode.decision_log import DecisionLog
from rtdecode.degraded import Degraded
from rtdecode.pipeline import Decision, OnlinePipeline
from rtdecode.stream.recording import RecordingSource

END_OF_RECORDING = Degraded.RECORDING_ENDED


def decode_recording(
    pipeline: OnlinePipeline,
    source: RecordingSource,
    block_samples: int | None = None,
    seed: int = 0,
    on_block: Callable[[int], None] | None = None,
) -> Iterator[Decision]:
    """Every decision of ``source`` in stream order; ``on_block(n_samples)`` after each block."""
    pipeline.bundle.check_stream(source.n_channels, source.sample_rate, source="recording")
    for i0, i1, t0, t1 in source.blocks(block_samples, seed):
        for k in range(t0, t1):
            pipeline.on_ttl(int(source.ttl_lines[k]), int(source.ttl_states[k]), int(source.ttl_samples[k]))
        block = source.block_uv(i0, i1)
        yield from pipeline.on_block(int(source.sample_numbers[i0]), block, time.monotonic_ns())
        if on_block is not None:
            on_block(i1 - i0)
    yield from pipeline.finish(END_OF_RECORDING)


def decode_to_log(
    pipeline: OnlinePipeline,
    recording: str | Path,
    out: str | Path,
    block_samples: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Decode ``recording`` into the JSON Lines log ``out``; returns the final counts.

    ``progress(done_samples, total_samples)`` is called after each block."""
    source = RecordingSource(recording)
    log = DecisionLog(out)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, source.n_samples)

    counts = {"decisions": 0, "ok": 0, "degraded": 0}
    run_id = uuid.uuid4().hex[:16]
    try:
        log.write(
            {
                "event": "start",
                "run_id": run_id,
                "time": time.time(),
                "mode": "offline decode",
                "recording": str(recording),
                "bundle": str(pipeline.bundle.path),
                "bundle_files": pipeline.bundle.manifest.files,
                "backend": pipeline.backend.device,
                "config": pipeline.cfg.model_dump(mode="json"),
            }
        )
        for seq, decision in enumerate(decode_recording(pipeline, source, block_samples, seed, advance), start=1):
            record = {"run_id": run_id, "seq": seq, **decision.record()}
            record["latency_ns"]["published"] = time.monotonic_ns()
            log.write(record)
            counts["decisions"] += 1
            counts["ok" if decision.ok else "degraded"] += 1
        counts["onsets"] = pipeline.counters()["onsets"]
        log.write(
            {
                "event": "stop",
                "run_id": run_id,
                "time": time.time(),
                "counters": {**pipeline.counters(), **counts},
                "image_scale": pipeline.image_scale,
                "baseline": pipeline.baseline_status,
            }
        )
    finally:
        log.close()
    return counts
