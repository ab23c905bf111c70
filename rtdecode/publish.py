"""Decisions out: a PUB socket (topic ``decision``) and an append-only JSON Lines log.

One message per closed trial, published first (the hot path) and then appended to the log,
flushed per trial, so a crash loses nothing already decided. Every decision carries its run's
``run_id`` (also in the log's ``start`` and ``stop`` records); sequence numbers start at 1 in each
run and never skip, so a client can detect drops, and a restarted daemon by its new ``run_id``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import zmq

from rtdecode.curve import CurveKeys, make_server
from rtdecode.decision_log import DecisionLog
from rtdecode.errors import RtdecodeError

TOPIC = b"decision"


class DecisionPublisher:
    def __init__(
        self,
        address: str,
        log_path: Path | None,
        context: zmq.Context | None = None,
        run_id: str = "",
        curve_server: CurveKeys | None = None,
    ) -> None:
        self.log_path = Path(log_path) if log_path else None
        self._log = DecisionLog(self.log_path) if self.log_path else None  # a bad path fails before binding
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.PUB)
        if curve_server is not None:
            make_server(self.sock, curve_server)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.setsockopt(zmq.SNDHWM, 10000)
        try:
            self.sock.bind(address)
        except zmq.ZMQError as err:
            self.sock.close()
            if self._log:
                self._log.close()
            raise RtdecodeError(
                f"cannot bind the decision socket {address}: {err} (another daemon running? "
                "choose another outputs.decision_port in the rig config)"
            ) from None
        self.address = address
        self.run_id = run_id
        self.seq = 0

    def publish(self, decision: dict) -> dict:
        self.seq += 1
        decision = {"run_id": self.run_id, "seq": self.seq, **decision}
        t = time.monotonic_ns()
        decision.setdefault("latency_ns", {})["published"] = t
        line = json.dumps(decision, separators=(",", ":"))
        self.sock.send_multipart([TOPIC, line.encode()])
        if self._log:
            self._log.write_line(line)
        return decision

    def log_event(self, event: dict) -> None:
        """Non-decision records (start, stop, provenance) go to the log only."""
        if self._log:
            self._log.write(event)

    def close(self) -> None:
        if self._log:
            self._log.close()
        self.sock.close()
