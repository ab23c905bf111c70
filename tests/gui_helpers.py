"""Helpers of the real-GUI tests: a short excerpt of a recording (the GUI plays in real time), the
GUI's HTTP API, and a raw subscriber that keeps what the GUI sends."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np

API = "http://127.0.0.1:37497"


def excerpt_recording(src: Path, dst: Path, seconds: float, ttl_margin_s: float = 0.0) -> Path:
    """Copy the first ``seconds`` of an Open Ephys Binary recording (``src`` holds ``structure.oebin``
    somewhere below it) to ``dst``, keeping its layout, sample numbers and the TTLs inside it (those
    within ``ttl_margin_s`` of the end are left out: their trial windows would run past it)."""
    oebin = next(Path(src).rglob("structure.oebin"))
    rec = oebin.parent
    out = Path(dst) / rec.relative_to(Path(src))
    out.mkdir(parents=True)
    shutil.copy(oebin, out / "structure.oebin")
    if (rec / "sync_messages.txt").exists():
        shutil.copy(rec / "sync_messages.txt", out / "sync_messages.txt")
    meta = json.loads(oebin.read_text())
    last = None
    for stream in meta["continuous"]:
        folder = stream["folder_name"].rstrip("/")
        n_ch = stream["num_channels"]
        n = int(seconds * stream["sample_rate"])
        c_in, c_out = rec / "continuous" / folder, out / "continuous" / folder
        c_out.mkdir(parents=True)
        data = np.memmap(c_in / "continuous.dat", dtype="<i2", mode="r").reshape(-1, n_ch)[:n]
        np.asarray(data).tofile(c_out / "continuous.dat")
        for name in ("sample_numbers.npy", "timestamps.npy"):
            np.save(c_out / name, np.load(c_in / name)[:n])
        last = int(np.load(c_out / "sample_numbers.npy")[-1]) - int(ttl_margin_s * stream["sample_rate"])
    for ev in (rec / "events").rglob("sample_numbers.npy"):
        keep = np.load(ev) <= last
        e_out = out / ev.parent.relative_to(rec)
        e_out.mkdir(parents=True, exist_ok=True)
        for f in ev.parent.glob("*.npy"):
            np.save(e_out / f.name, np.load(f)[keep])
    return Path(dst)


def api(method: str, path: str, body: dict | None = None, timeout: float = 60):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(API + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as f:
        text = f.read().decode()
    try:
        return json.loads(text)
    except ValueError:
        return text


def processors() -> list[dict]:
    return api("GET", "/api/processors").get("processors", [])


def processor_id(name: str) -> int:
    ids = [p["id"] for p in processors() if p.get("name") == name]
    assert ids, f"no {name!r} in the GUI's chain: {[p.get('name') for p in processors()]}"
    return ids[-1]


def set_mode(mode: str, wait_s: float = 30, timeout: float = 60) -> None:
    """ACQUIRE or IDLE. GUI 1.0.1 never answers a request for the mode it is already in (measured: the
    PUT hangs, the GUI stays usable), so the request is sent only for a change."""
    if api("GET", "/api/status").get("mode") == mode:
        return
    api("PUT", "/api/status", {"mode": mode}, timeout=timeout)
    deadline = time.monotonic() + wait_s
    while api("GET", "/api/status").get("mode") != mode:
        assert time.monotonic() < deadline, f"the GUI did not reach {mode} in {wait_s} s"
        time.sleep(0.1)


def build_chain(recording: Path, sinks: list[tuple[str, dict]], out: Path) -> Path:
    """File Reader on ``recording`` -> each (processor name, parameters) in turn; saved to ``out``."""
    oebin = next(Path(recording).rglob("structure.oebin")).resolve()
    set_mode("IDLE")
    api("GET", "/api/processors/clear")
    api("PUT", "/api/processors/add", {"name": "File Reader"})
    source = processor_id("File Reader")
    api("PUT", f"/api/processors/{source}/parameters/selected_file", {"value": str(oebin)})
    for name, params in sinks:
        api("PUT", "/api/processors/add", {"name": name, "source_id": source})
        source = processor_id(name)
        for key, value in params.items():
            api("PUT", f"/api/processors/{source}/parameters/{key}", {"value": value})
    api("PUT", "/api/save", {"filepath": str(Path(out).resolve())})
    assert Path(out).is_file(), f"the GUI did not write {out}"
    return Path(out)


def load_chain(chain: Path) -> None:
    set_mode("IDLE")
    api("PUT", "/api/load", {"path": str(Path(chain).resolve())}, timeout=120)
