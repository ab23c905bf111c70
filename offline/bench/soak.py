"""``rtdecode bench soak``: replay a recording in a loop at real time for N minutes; memory and counts.

A synthetic stream (the online benchmark's generator) is written as an Open Ephys recording with a
timing bundle; ``rtdecode replay --loop`` publishes it from its own process while the daemon runs
in this one. Every ``sample_s`` the daemon process's resident memory is sampled. The figure is the
growth from the end of the first minute (warm-up: allocations, JIT, caches) to the end. Every loop
of the recording is an acquisition restart for the daemon, so the run also exercises restarts.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from rtdecode.offline.bench.online_bench import (
    FS,
    synthetic_stream,
    templates_on_preprocessing,
    write_recording,
    write_timing_bundle,
)
from rtdecode.offline.bench.session import ReplayerProcess


def rss_mb() -> float:
    """Resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def run_soak(
    out: Path, minutes: float, n_channels: int = 32, loop_s: float = 20.0, sample_s: float = 10.0, cfg=None, log=print
) -> dict:
    from rtdecode.offline.bench.offline_bench import machine

    from rtdecode import rig_configs
    from rtdecode.client import DecisionClient
    from rtdecode.daemon import Daemon

    if cfg is None:
        cfg = rig_configs.load("replay_local.toml")
    cfg = cfg.model_copy(update={"stream": cfg.stream.model_copy(update={"channel_count": n_channels})})
    with tempfile.TemporaryDirectory(prefix="rtdecode-soak-") as tmp:
        work = Path(tmp)
        log(f"soak: {n_channels} channels, a {loop_s:g} s recording replayed in a loop for {minutes:g} min ...")
        stream = synthetic_stream(n_channels, loop_s, seed=0)
        onsets = np.arange(int(1.0 * FS), len(stream.traces) - int(0.5 * FS), int(0.25 * FS))
        t = templates_on_preprocessing(stream)
        rec = write_recording(stream, work / "recording", onsets, cfg.trials.ttl_line, 0)
        bundle = write_timing_bundle(stream, t, onsets, work / "bundle", 48, cfg.trials.ttl_line, 0)
        daemon = Daemon(cfg, bundle, work / "decisions.jsonl", log=log)
        daemon.start()
        client = DecisionClient(f"tcp://127.0.0.1:{cfg.outputs.decision_port}")
        replayer = ReplayerProcess(rec, cfg.stream.data_port, cfg.stream.host, 1.0, loop=True)
        th = threading.Thread(target=replayer.run, name="replayer")
        th.start()
        samples: list[tuple[float, float]] = []
        n_decisions = 0
        t0 = time.monotonic()
        next_sample = t0
        try:
            while time.monotonic() - t0 < minutes * 60:
                if client.poll(100) is not None:
                    n_decisions += 1
                if time.monotonic() >= next_sample:
                    samples.append((time.monotonic() - t0, rss_mb()))
                    next_sample += sample_s
        finally:
            replayer.stop()
            th.join()
            daemon.stop()
            daemon.wait()
            while client.poll(300) is not None:
                n_decisions += 1
            client.close()
        st = daemon.status()
    after_warmup = [m for s, m in samples if s >= min(60.0, minutes * 30)] or [m for _, m in samples]
    c = st["counters"]
    result = {
        "machine": machine(("rtdecode", "numpy", "pyzmq", "onnxruntime")),
        "minutes": minutes,
        "channels": n_channels,
        "rss_mb": samples,
        "rss_start_mb": after_warmup[0],
        "rss_end_mb": after_warmup[-1],
        "rss_growth_pct": 100.0 * (after_warmup[-1] - after_warmup[0]) / after_warmup[0],
        "onsets": c["onsets"],
        "decisions": c["decisions"],
        "decisions_received": n_decisions,
        "degraded": c["degraded"],
        "restarts": c["restarts"],
        "overruns": c["overruns"],
        "internal_errors": c["internal_errors"],
        "every_onset_decided": c["decisions"] == c["onsets"],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result
