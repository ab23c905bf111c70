"""Replay a recording through a daemon on loopback and collect what it decides (tests, demo, bench).

Starts the daemon (in this process, its own threads), a decision client, and the replayer (a
thread) on the rig config's ports; collects decisions until the replay has ended and no decision
has arrived for ``settle_s``; then drains and stops the daemon.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rtdecode.replay.replayer import Fault, Replayer, ReplayStats

from rtdecode.client import DecisionClient
from rtdecode.config import RigConfig
from rtdecode.daemon import Daemon


@dataclass
class SessionResult:
    decisions: list[dict]
    status: dict
    replay: ReplayStats
    log_path: Path
    messages: list[str]


def replay_through_daemon(
    bundle: str | Path,
    recording: str | Path,
    cfg: RigConfig,
    log_path: str | Path,
    speed: float | None = 1.0,
    faults: list[Fault] | None = None,
    settle_s: float = 4.0,
    on_tick=None,
    log=None,
) -> SessionResult:
    messages: list[str] = []

    def sink(msg: str) -> None:
        messages.append(msg)
        if log is not None:
            log(msg)

    daemon = Daemon(cfg, bundle, log_path, log=sink)
    daemon.start()
    host = "127.0.0.1" if cfg.outputs.bind_host in ("0.0.0.0", "::") else cfg.outputs.bind_host
    client = DecisionClient(f"tcp://{host}:{cfg.outputs.decision_port}")
    time.sleep(0.3)  # the client's SUB connects before anything is published
    replayer = Replayer(
        recording, cfg.stream.data_port, host=cfg.stream.host, speed=speed, faults=faults, wait_for_heartbeat_s=10.0
    )
    th = threading.Thread(target=replayer.run, name="replayer")
    th.start()
    decisions: list[dict] = []
    last_new = time.monotonic()
    try:
        while th.is_alive() or time.monotonic() - last_new < settle_s:
            if daemon.state == "failed":
                replayer.stop()
            d = client.poll(50)
            if on_tick is not None:
                on_tick()
            if d is not None:
                decisions.append(d)
                last_new = time.monotonic()
            elif daemon.state == "failed" and not th.is_alive():
                break
    finally:
        replayer.stop()
        th.join()
        daemon.stop()
        daemon.wait()
        client.close()
    return SessionResult(decisions, daemon.status(), replayer.stats, Path(daemon.log_path), messages)
