"""The live rig plugin imports with only the standard library, numpy and pyzmq, and never raises."""

import subprocess
import sys
from pathlib import Path

PLUGIN = Path(__file__).resolve().parent.parent / "rtdecode" / "plugins" / "openephys_python_processor.py"

SCRIPT = f"""
import sys, importlib.abc, importlib.util
allowed = set(sys.stdlib_module_names) | {{"numpy", "zmq"}}
class OnlyStdlibNumpyZmq(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] not in allowed:
            raise ImportError("blocked: " + name)
        return None
before = set(sys.modules)
sys.meta_path.insert(0, OnlyStdlibNumpyZmq())
spec = importlib.util.spec_from_file_location("rtdecode_plugin", {str(PLUGIN)!r})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
import numpy as np
class Handle:
    def __init__(self): self.events = []
    def add_python_event(self, line, state): self.events.append((line, state))
p = mod.PyProcessor(Handle(), 4, 30000.0)
for _ in range(3):
    p.process(np.zeros((4, 700), np.float32))
p.handle_ttl_event(100, "TTL", 1234, 0, True)
p.start_acquisition(); p.stop_acquisition()
# Cython extension modules (inside pyzmq) register pseudo-modules named cython_runtime / _cython_*.
bad = [k for k in set(sys.modules) - before
       if k.split(".")[0] not in allowed and not k.startswith(("_cython_", "cython_runtime"))]
print("ok", bad)
"""


def test_plugin_imports_with_only_stdlib_numpy_and_pyzmq():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok []"


def test_plugin_survives_garbage_on_the_decision_socket(monkeypatch):
    import numpy as np
    import zmq

    from tests.conftest import free_port_pair
    from tests.waiting import wait_until

    port = free_port_pair()
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)  # publishes as PUB does, and tells us when the plugin has subscribed
    pub.bind(f"tcp://127.0.0.1:{port}")
    monkeypatch.setenv("RTDECODE_DECISIONS", f"tcp://127.0.0.1:{port}")
    from rtdecode.plugins.openephys_python_processor import PyProcessor

    class Handle:
        def __init__(self):
            self.events = []

        def add_python_event(self, line, state):
            self.events.append((line, state))

    p = PyProcessor(Handle(), 4, 30000.0)
    assert pub.poll(10_000) and pub.recv() == b"\x01decision"  # the plugin's subscription has arrived
    pub.send_multipart([b"decision", b"{not json"])
    pub.send_multipart([b"decision"])
    pub.send_multipart([b"decision", b'{"seq": 1, "status": "ok", "predicted_class": "natural"}'])
    pub.send_multipart([b"decision", b'{"seq": 3, "status": "degraded: gap", "predicted_class": null}'])
    block = np.zeros((4, 700), np.float32)
    wait_until(lambda: p.process(block) or p.counters["decisions"] == 2, 10, "the plugin to read all four messages")
    for _ in range(4):  # the pulse's OFF comes on a later block
        p.process(block)
    pub.close()
    assert p.processor.events == [(1, True), (1, False)]
    assert p.counters["errors"] == 2 and p.counters["dropped"] == 1 and p.counters["decisions"] == 2
