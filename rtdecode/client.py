"""The small client a rig program uses to receive decisions (stdlib + pyzmq only).

    from rtdecode.client import DecisionClient
    with DecisionClient("tcp://127.0.0.1:5560") as c:
        for d in c.decisions(timeout_s=1.0):
            print(d["seq"], d["predicted_class"], d["status"])

``dropped`` counts decisions lost between the daemon and this client (gaps in ``seq`` within a
run); ``restarts`` counts daemon restarts seen (a new ``run_id``), after which ``seq`` starts
again at 1 without counting as a drop.
"""

from __future__ import annotations

import json
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from rtdecode.curve import make_client

TOPIC = b"decision"


class DecisionClient:
    def __init__(self, address: str, context: zmq.Context | None = None, curve=None) -> None:
        """``curve``: ``(client CurveKeys, server public key)`` when the daemon uses CURVE."""
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, 1 << 20)  # a decision is ~1 kB
        if curve is not None:
            make_client(self.sock, *curve)
        self.sock.setsockopt(zmq.SUBSCRIBE, TOPIC)
        # watched from before connecting, so that wait_connected cannot miss a fast handshake
        self._monitor: zmq.Socket | None = self.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self.connected = False
        self.sock.connect(address)
        self.last_seq: int | None = None
        self.run_id: str | None = None
        self.dropped = 0
        self.restarts = 0

    def wait_connected(self, timeout_s: float = 5.0) -> bool:
        """Block until the connection to the daemon's PUB has completed its handshake (after which the
        subscription is on its way); False if that did not happen within ``timeout_s``. A client that
        must not miss the first decisions calls this before the stream starts."""
        deadline = time.monotonic() + timeout_s
        while not self.connected and self._monitor is not None and (left := deadline - time.monotonic()) > 0:
            if self._monitor.poll(int(left * 1000) + 1):
                if recv_monitor_message(self._monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self.connected = True
                    self._stop_monitor()
        return self.connected

    def _stop_monitor(self) -> None:
        if self._monitor is not None:
            self.sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None

    def poll(self, timeout_ms: int = 0) -> dict | None:
        """One decision if one arrives within ``timeout_ms`` (0 = never block), else None."""
        if not self.sock.poll(timeout_ms):
            return None
        _, payload = self.sock.recv_multipart()
        d = json.loads(payload)
        run = d.get("run_id")
        if self.run_id is not None and run != self.run_id:
            self.restarts += 1
            self.last_seq = None
        self.run_id = run
        if self.last_seq is not None and d["seq"] > self.last_seq + 1:
            self.dropped += d["seq"] - self.last_seq - 1
        self.last_seq = d["seq"]
        return d

    def decisions(self, timeout_s: float = 1.0, stop=None):
        """Yield decisions until ``stop()`` is true or none arrives for ``timeout_s``."""
        while stop is None or not stop():
            d = self.poll(int(timeout_s * 1000))
            if d is None:
                if stop is None:
                    return
                continue
            yield d

    def close(self) -> None:
        self._stop_monitor()
        self.sock.close()

    def __enter__(self) -> DecisionClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def control_request(address: str, command: str, timeout_s: float = 3.0, curve=None) -> dict:
    """Ask the daemon's control socket (``status`` or ``stop``); raises TimeoutError if it does not answer.
    ``curve``: ``(client CurveKeys, server public key)`` when the daemon uses CURVE."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        make_client(sock, *curve)
    sock.connect(address)
    try:
        sock.send_json({"cmd": command})
        if not sock.poll(int(timeout_s * 1000)):
            raise TimeoutError(f"no answer from the daemon at {address} within {timeout_s} s (is it running?)")
        return sock.recv_json()
    finally:
        sock.close()
