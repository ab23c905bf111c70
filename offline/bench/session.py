"""Replay a recording through a daemon on loopback and collect what it decides (tests, demo, bench).

Starts the daemon (in this process, its own threads), a decision client, and the replayer (a
thread, or an ``rtdecode replay`` child process) on the rig config's ports; collects decisions
until the replay has ended, the daemon's ring is empty and nothing new (a decision, a sample received
or processed) has come for ``quiet_s``; then drains and stops the daemon.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rtdecode.replay.replayer import PLUGIN_SEND_HWM, ZMQ_INTERFACE, Fault, Replayer, ReplayStats

from rtdecode.client import DecisionClient
from rtdecode.config import RigConfig
from rtdecode.daemon import Daemon


@dataclass
class SessionResult:
    decisions: list[dict]
    status: dict
    replay: ReplayStats | None  # None when the replayer ran as a process
    log_path: Path
    messages: list[str]


class ReplayerProcess:
    """``rtdecode replay`` as a child process, with the in-process Replayer's run/stop/stats."""

    def __init__(
        self,
        recording: str | Path,
        port: int,
        host: str,
        speed: float | None,
        preload: bool = False,
        loop: bool = False,
        lossless: bool = False,
        protocol: str = ZMQ_INTERFACE,
    ) -> None:
        self.cmd = (
            [
                sys.executable,
                "-m",
                "rtdecode",
                "replay",
                str(recording),
                "--port",
                str(port),
                "--host",
                host,
                "--speed",
                "max" if speed is None else f"{speed:g}",
                "--wait-heartbeat",
                "10",
            ]
            + (["--preload"] if preload else [])
            + (["--loop"] if loop else [])
            + (["--lossless"] if lossless else [])
            + ["--protocol", protocol]
        )
        self.proc: subprocess.Popen | None = None
        self.stats = None
        self.output = ""
        self._stopped = False
        self.error: str | None = None

    def run(self) -> None:
        if self._stopped:
            return
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output, _ = self.proc.communicate()
        if self.proc.returncode not in (0, -signal.SIGINT):
            self.error = f"the replayer exited with {self.proc.returncode}: {self.output.strip()[-2000:]}"

    def stop(self) -> None:
        self._stopped = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)


def replay_through_daemon(
    bundle: str | Path,
    recording: str | Path,
    cfg: RigConfig,
    log_path: str | Path,
    speed: float | None = 1.0,
    faults: list[Fault] | None = None,
    quiet_s: float = 0.75,
    on_tick=None,
    log=None,
    replayer_process: bool = False,
    preload: bool = False,
    lossless: bool = False,
) -> SessionResult:
    """``replayer_process=True`` runs ``rtdecode replay`` in its own process (no GIL shared with the
    daemon, as on a rig where the GUI is another program); faults need the in-process replayer.
    ``preload=True``: the replayer renders every message before sending (throughput benchmarks).
    ``lossless=False`` (default): the replayer drops like the plugin when the daemon falls behind
    (send high-water mark 1,000 messages); ``True`` never drops, upstream nor in the daemon's ring
    (throughput benchmarks). ``quiet_s``: how long nothing may happen, after the replay and once the
    ring is empty, before the session is over (the receiver reports its counters every 0.25 s)."""
    if replayer_process and faults:
        raise ValueError("faults need the in-process replayer (replayer_process=False)")
    messages: list[str] = []

    def sink(msg: str) -> None:
        messages.append(msg)
        if log is not None:
            log(msg)

    daemon = Daemon(cfg, bundle, log_path, log=sink, lossless=lossless)
    daemon.start()
    host = "127.0.0.1" if cfg.outputs.bind_host in ("0.0.0.0", "::") else cfg.outputs.bind_host
    client = DecisionClient(f"tcp://{host}:{cfg.outputs.decision_port}")
    if not client.wait_connected(10.0):
        daemon.stop()
        daemon.wait()
        client.close()
        raise RuntimeError(f"could not connect to the daemon's decisions at {cfg.outputs.decision_port}")
    if replayer_process:
        replayer = ReplayerProcess(
            recording,
            cfg.stream.data_port,
            cfg.stream.host,
            speed,
            preload,
            lossless=lossless,
            protocol=cfg.stream.protocol,
        )
    else:
        replayer = Replayer(
            recording,
            cfg.stream.data_port,
            host=cfg.stream.host,
            speed=speed,
            faults=faults,
            wait_for_heartbeat_s=10.0,
            preload=preload,
            send_hwm=0 if lossless else PLUGIN_SEND_HWM,
            protocol=cfg.stream.protocol,
        )
    th = threading.Thread(target=replayer.run, name="replayer")
    th.start()
    decisions: list[dict] = []
    last_new = time.monotonic()
    last_progress = (0, 0)
    try:
        while th.is_alive() or daemon.ring_fill() > 0 or time.monotonic() - last_new < quiet_s:
            if daemon.state == "failed":
                replayer.stop()
            d = client.poll(50)
            if on_tick is not None:
                on_tick()
            # still catching up (the receiver draining its socket, the worker its ring) is not idle
            progress = (daemon.receiver_totals.samples_received, daemon.pipeline.samples_processed)
            if d is not None or progress != last_progress:
                last_progress = progress
                last_new = time.monotonic()
            if d is not None:
                decisions.append(d)
            elif daemon.state == "failed" and not th.is_alive():
                break
    finally:
        replayer.stop()
        th.join()
        daemon.stop()
        daemon.wait()
        # decisions published while stopping (trials still open: "degraded: shutdown")
        while (d := client.poll(300)) is not None:
            decisions.append(d)
        client.close()
    if getattr(replayer, "error", None):
        raise RuntimeError(replayer.error)
    return SessionResult(decisions, daemon.status(), replayer.stats, Path(daemon.log_path), messages)
