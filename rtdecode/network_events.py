"""Decisions -> TTLs through the GUI's Network Events plugin, for rigs without the Python Processor.

The plugin answers a REQ/REP conversation on its port with commands like ``TTL Line=3 State=1``
(1-based lines). Sending happens on its own thread from a bounded queue, so the daemon's hot path
never waits on the GUI: a full queue drops the pulse and counts it. Each pulse is ON, then OFF after
``pulse_ms``. A request that gets no reply within ``timeout_s`` closes and recreates the REQ socket
(lazy pirate) and is counted as failed.
"""

from __future__ import annotations

import queue
import threading
import time

import zmq


class NetworkEventsSender:
    def __init__(
        self,
        address: str,
        line: int,
        pulse_ms: float = 50.0,
        timeout_s: float = 1.0,
        max_pending: int = 64,
        context: zmq.Context | None = None,
    ) -> None:
        self.address = address
        self.line = int(line)
        self.pulse_s = pulse_ms / 1000.0
        self.timeout_ms = int(timeout_s * 1000)
        self.ctx = context or zmq.Context.instance()
        self.queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self.counters = {"pulses": 0, "dropped": 0, "failed": 0}
        self._asked = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtdecode-network-events", daemon=True)
        self._thread.start()

    @property
    def sent(self) -> bool:
        """Whether a pulse has been asked for yet (the daemon's feedback route is active)."""
        return self._asked

    def pulse(self) -> None:
        """Queue one ON/OFF pulse; returns at once."""
        self._asked = True
        try:
            self.queue.put_nowait(time.monotonic())
        except queue.Full:
            self.counters["dropped"] += 1

    def _request(self, sock, text: str):
        sock.send_string(text)
        if sock.poll(self.timeout_ms):
            sock.recv()
            return sock
        self.counters["failed"] += 1
        sock.close()
        return None

    def _socket(self):
        s = self.ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.address)
        return s

    def _run(self) -> None:
        sock = None
        while not self._stop.is_set():
            try:
                self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            sock = sock or self._socket()
            sock = self._request(sock, f"TTL Line={self.line} State=1")
            time.sleep(self.pulse_s)
            sock = sock or self._socket()
            sock = self._request(sock, f"TTL Line={self.line} State=0")
            self.counters["pulses"] += 1
        if sock is not None:
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
