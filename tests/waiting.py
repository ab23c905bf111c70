"""Waiting on conditions, not the clock: each wait polls what it waits for and fails, saying what,
when a bounded timeout passes."""

from __future__ import annotations

import time

import zmq
from zmq.utils.monitor import recv_monitor_message


def wait_until(condition, timeout_s: float, what: str, every_s: float = 0.02) -> None:
    """Poll ``condition()`` until it is true; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)


def connect_and_wait(sock: zmq.Socket, address: str, timeout_s: float = 10.0) -> None:
    """Connect ``sock`` and return once its handshake with the peer has succeeded (a SUB's
    subscription goes out right after it)."""
    mon = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        sock.connect(address)
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not mon.poll(int(left * 1000) + 1):
                raise AssertionError(f"no handshake with {address} within {timeout_s:g} s")
            if recv_monitor_message(mon)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                return
    finally:
        sock.disable_monitor()
        mon.close(linger=0)


def wait_settled(daemon, timeout_s: float = 30.0, quiet_s: float = 0.75) -> None:
    """Once the upstream has finished: wait until the daemon's ring is empty and neither the samples it
    received nor those it processed have changed for ``quiet_s`` (the receiver reports every 0.25 s)."""
    deadline = time.monotonic() + timeout_s
    last, since = None, time.monotonic()
    while True:
        now = (daemon.receiver_totals.samples_received, daemon.pipeline.samples_processed, daemon.ring_fill())
        if now != last:
            last, since = now, time.monotonic()
        elif now[2] == 0 and time.monotonic() - since >= quiet_s:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the daemon did not settle within {timeout_s:g} s (received, processed, ring: {now})")
        time.sleep(0.02)
