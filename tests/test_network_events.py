"""Decisions -> Network Events TTL commands, never blocking the caller."""

import socket
import threading

import zmq

from rtdecode.network_events import NetworkEventsSender

from .waiting import wait_until


def test_pulses_become_on_off_commands_with_one_based_lines():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = zmq.Context.instance()
    rep = ctx.socket(zmq.REP)  # stands in for the GUI's Network Events plugin
    rep.bind(f"tcp://127.0.0.1:{port}")
    got = []

    def serve():
        while len(got) < 4:
            if rep.poll(3000):
                got.append(rep.recv_string())
                rep.send_string("TTL Handled")
            else:
                break

    th = threading.Thread(target=serve)
    th.start()
    sender = NetworkEventsSender(f"tcp://127.0.0.1:{port}", line=4, pulse_ms=5)
    sender.pulse()
    sender.pulse()
    th.join(10)
    sender.close()
    rep.close()
    assert got == ["TTL Line=4 State=1", "TTL Line=4 State=0"] * 2
    assert sender.counters["pulses"] == 2 and sender.counters["failed"] == 0


def test_a_missing_gui_is_counted_not_fatal():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = NetworkEventsSender(f"tcp://127.0.0.1:{port}", line=1, pulse_ms=1, timeout_s=0.2, max_pending=1)
    for _ in range(5):
        sender.pulse()  # the queue holds one; the rest are dropped and counted
    wait_until(lambda: sender.counters["failed"] >= 1, 10, "a pulse to fail against the missing GUI")
    sender.close()
    assert sender.counters["failed"] >= 1 and sender.counters["dropped"] >= 1
