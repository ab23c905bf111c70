"""rtdecode's live rig plugin for the Open Ephys GUI's Python Processor (GUI 1.0, Python 3.10).

Load it in the GUI: add a Python Processor to the signal chain after the source, set its Python
Home to an environment with numpy and pyzmq, and choose this file as the script. Each decision the
daemon publishes becomes a TTL pulse on the configured line (ON in one block, OFF in a later block)
on the processor's "Python Processor Output" channel, so downstream plugins (TTL panels, Arduino
Output, Record Node) see it.

Safety rules (DESIGN section 6): ``process`` runs on the GUI's audio thread and its exceptions are
not caught by the GUI, so nothing here raises; each block does bounded work (at most
``MAX_DECISIONS_PER_BLOCK`` decisions read, never a blocking wait); only the standard library,
numpy and pyzmq are imported. Heavy work stays in the daemon.

Settings come from environment variables (the GUI offers no parameters to a script):
``RTDECODE_DECISIONS`` (default ``tcp://127.0.0.1:5560``), ``RTDECODE_TTL_NATURAL`` and
``RTDECODE_TTL_ARTIFICIAL`` (0-based lines, defaults 1 and 2), ``RTDECODE_PULSE_BLOCKS`` (blocks the
line stays ON, default 1), ``RTDECODE_TTL_DEGRADED`` (line for degraded trials, default none).
"""

import json
import os
import sys

try:  # registers the type of the processor handle inside the GUI; absent outside it
    import oe_pyprocessor  # noqa: F401
except ImportError:
    pass

import numpy as np  # noqa: F401  (the GUI hands numpy arrays to process())

try:
    import zmq
except ImportError:  # the GUI's environment lacks pyzmq: stay loaded, do nothing, say why once
    zmq = None

MAX_DECISIONS_PER_BLOCK = 8


def _env_int(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        return default


class PyProcessor:
    def __init__(self, processor, num_channels, sample_rate):
        self.processor = processor
        self.num_channels = num_channels
        self.sample_rate = sample_rate
        self.address = os.environ.get("RTDECODE_DECISIONS", "tcp://127.0.0.1:5560")
        self.lines = {
            "natural": _env_int("RTDECODE_TTL_NATURAL", 1),
            "artificial": _env_int("RTDECODE_TTL_ARTIFICIAL", 2),
        }
        self.degraded_line = _env_int("RTDECODE_TTL_DEGRADED", -1)
        self.pulse_blocks = max(1, _env_int("RTDECODE_PULSE_BLOCKS", 1))
        self.high = {}  # line -> blocks left before it goes OFF
        # coalesced: decisions that arrived while their line was still high (no second pulse)
        self.counters = {"decisions": 0, "pulses": 0, "coalesced": 0, "dropped": 0, "errors": 0}
        self.last_seq = None
        self.last_error = None
        self.sock = None
        self.ctx = None
        self._connect()

    def _connect(self):
        if zmq is None:
            self.last_error = "pyzmq is not installed in the GUI's Python environment"
            sys.stderr.write("rtdecode plugin: " + self.last_error + "\n")
            return
        try:
            self.ctx = zmq.Context.instance()
            self.sock = self.ctx.socket(zmq.SUB)
            self.sock.setsockopt(zmq.LINGER, 0)
            self.sock.setsockopt(zmq.RCVHWM, 1000)
            self.sock.setsockopt(zmq.SUBSCRIBE, b"decision")
            self.sock.connect(self.address)
        except Exception as err:  # never raise into the GUI
            self.last_error = f"cannot connect to {self.address}: {err}"
            self.sock = None

    def _emit(self, line, state):
        try:
            self.processor.add_python_event(int(line), bool(state))
        except Exception as err:
            self.counters["errors"] += 1
            self.last_error = f"add_python_event failed: {err}"

    def process(self, data):
        try:
            # OFF for pulses that have lasted their blocks (state change on a later block than ON).
            for line in list(self.high):
                self.high[line] -= 1
                if self.high[line] <= 0:
                    del self.high[line]
                    self._emit(line, False)
            if self.sock is None:
                return
            for _ in range(MAX_DECISIONS_PER_BLOCK):
                try:
                    frames = self.sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._on_decision(frames)
        except Exception as err:  # bounded, never raises into the audio thread
            self.counters["errors"] += 1
            self.last_error = f"{type(err).__name__}: {err}"

    def _on_decision(self, frames):
        if len(frames) != 2:
            self.counters["errors"] += 1
            return
        try:
            d = json.loads(frames[1])
        except ValueError:
            self.counters["errors"] += 1
            return
        seq = d.get("seq")
        if isinstance(seq, int):
            if self.last_seq is not None and seq > self.last_seq + 1:
                self.counters["dropped"] += seq - self.last_seq - 1
            self.last_seq = seq
        self.counters["decisions"] += 1
        status = d.get("status", "")
        line = self.lines.get(d.get("predicted_class")) if status == "ok" else None
        if line is None and status != "ok" and self.degraded_line >= 0:
            line = self.degraded_line
        if line is None:
            return
        if line in self.high:
            self.counters["coalesced"] += 1
            return
        self._emit(line, True)
        self.high[line] = self.pulse_blocks
        self.counters["pulses"] += 1

    def start_acquisition(self):
        self.high.clear()

    def stop_acquisition(self):
        for line in list(self.high):
            self._emit(line, False)
        self.high.clear()

    def handle_ttl_event(self, source_node, channel, sample_number, line, state):
        pass  # stimulus TTLs are handled by the daemon; nothing to do on the audio thread

    def start_recording(self, recording_dir):
        pass

    def stop_recording(self):
        pass
