"""The daemon's handle on its receiver process: the ring it owns, the event socket, the process.

:class:`ReceiverProcess` creates the shared-memory ring (after removing the rings of dead daemons),
binds a PULL socket at ``ipc://`` inside a fresh directory only this user can enter, and starts
``python -m rtdecode.stream.receiver``. The worker thread reads events from it in stream order
(:meth:`poll`) and blocks from the ring in place. If the process dies unexpectedly it is started
again on an empty ring (the worker sees the gap in sample numbers and degrades what it touches);
on close the process is stopped (SIGTERM, then SIGKILL), the ring unlinked and the directory removed.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

from rtdecode.errors import RtdecodeError
from rtdecode.stream import sources
from rtdecode.stream.items import ReceiverEvent, ReceiverReady
from rtdecode.stream.receiver import ReceiverSpec
from rtdecode.stream.ring import BlockRing, remove_stale_segments, ring_bytes, segment_name

#: Samples per ring slot: the GUI's blocks are ~700 samples at 30 kHz (longer ones take two slots).
SLOT_SAMPLES = 1024


class ReceiverProcess:
    def __init__(
        self,
        stream,  # rtdecode.config.StreamConfig
        ctx: zmq.Context,
        run_id: str,
        slots: int,
        log=print,
        slot_samples: int = SLOT_SAMPLES,
        wait_when_full: bool = False,
    ) -> None:
        self.log = log
        stale = remove_stale_segments()
        if stale:
            names = ", ".join(stale)
            log(f"note: removed {len(stale)} shared-memory ring(s) left by daemons no longer running: {names}")
        self.ring = BlockRing(segment_name(run_id), slots, slot_samples, stream.channel_count, create=True)
        self._dir = Path(tempfile.mkdtemp(prefix="rtdecode-"))  # mode 0700: nobody else can connect
        self.events_address = f"ipc://{self._dir / 'events'}"
        self.events = ctx.socket(zmq.PULL)
        self.events.setsockopt(zmq.RCVHWM, 0)
        self.events.setsockopt(zmq.LINGER, 0)
        self.events.bind(self.events_address)
        self.spec = ReceiverSpec(
            host=stream.host,
            data_port=stream.data_port,
            channel_count=stream.channel_count,
            stream_name=stream.stream_name,
            sample_rate=stream.sample_rate,
            channel_numbers=stream.channel_numbers,
            ring_name=self.ring.name,
            ring_slots=slots,
            slot_samples=slot_samples,
            events_address=self.events_address,
            parent_pid=os.getpid(),
            protocol=stream.protocol,
            protocol_module=sources.get(stream.protocol).module,
            wait_when_full=wait_when_full,
        )
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    @property
    def ring_mib(self) -> float:
        return ring_bytes(self.ring.slots, self.ring.slot_samples, self.ring.n_channels) / 2**20

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "rtdecode.stream.receiver", self.spec.to_json()])

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def restart(self) -> None:
        """After an unexpected exit: a new process on an empty ring."""
        self.restarts += 1
        self.ring.reset()
        self.start()

    def wait_ready(self, timeout_s: float = 60.0) -> ReceiverReady:
        """Wait for the process's first event (it is up and its SUB socket connecting)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            event = self.poll(100)
            if isinstance(event, ReceiverReady):
                return event
            if event is not None:
                raise RtdecodeError(f"the receiver process sent {type(event).__name__} before it was ready")
            if not self.alive:
                raise RtdecodeError(f"the receiver process exited with code {self.proc.returncode} while starting")
        raise RtdecodeError(f"the receiver process did not start within {timeout_s:.0f} s")

    def poll(self, timeout_ms: int) -> ReceiverEvent | None:
        if not self.events.poll(timeout_ms):
            return None
        return pickle.loads(self.events.recv())

    def terminate(self) -> None:
        """Ask the process to stop: it flushes, sends its final counters and exits."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)

    def close(self, wait_s: float = 5.0) -> None:
        if self.proc is not None:
            self.terminate()
            try:
                self.proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.events.close()
        self.ring.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def wait_exit(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.alive and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self.alive
