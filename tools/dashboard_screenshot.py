"""The README's dashboard screenshot, made on a real session: ``make demo``'s bundle serves its
second session (replayed as the GUI's ZMQ Interface would), ``rtdecode dashboard``'s page watches
with the session's stimulus log, and headless Chromium takes the picture.

    .venv/bin/python tools/dashboard_screenshot.py [--demo demo_out] [--seconds 40] [--out docs/dashboard.png]

Needs ``make demo`` run first, and Debian's chromium and chromium-driver.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo", type=Path, default=ROOT / "demo_out", help="make demo's output folder")
    ap.add_argument("--seconds", type=float, default=40.0, help="seconds of session to replay before the picture")
    ap.add_argument("--speed", type=float, default=2.0, help="replay speed (x real time)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = ap.parse_args(argv)

    from rtdecode.replay.replayer import Replayer
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from rtdecode.config import load_rig_config
    from rtdecode.daemon import Daemon
    from rtdecode.dashboard.feed import DashboardFeed
    from rtdecode.dashboard.server import DashboardServer
    from rtdecode.scoring import read_labels

    bundle = next(args.demo.glob("*.bundle"), None)
    target = args.demo / "animals" / "M2-s2"
    if bundle is None or not target.is_dir():
        print(f"no demo bundle or session in {args.demo}: run make demo first", file=sys.stderr)
        return 2
    meta = json.loads((target / "animal.json").read_text())
    cfg = load_rig_config(ROOT / "rig_configs" / "replay_local.toml")
    labels = {int(k): str(v) for k, v in read_labels(target / meta["stimulus_log"]).items()}
    log = Path("/tmp/rtdecode-dashboard-shot.jsonl")
    d = Daemon(cfg, bundle, log, log=lambda *_: None)
    d.start()
    o = cfg.outputs
    feed = DashboardFeed(f"tcp://127.0.0.1:{o.decision_port}", f"tcp://127.0.0.1:{o.control_port}", labels=labels)
    server = DashboardServer(feed, port=8050).start()
    rep = Replayer(target / meta["recording"], cfg.stream.data_port, speed=args.speed, wait_for_heartbeat_s=10)
    th = threading.Thread(target=rep.run)
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1450"):
        opts.add_argument(a)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=opts)
    try:
        th.start()
        browser.get(server.url)
        time.sleep(args.seconds / args.speed)  # let the session run: this is a picture, not a test
        args.out.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(args.out))
        print(f"wrote {args.out} after {args.seconds:.0f} s of session ({feed.decisions_seen} decisions)")
    finally:
        browser.quit()
        rep.stop()
        th.join()
        d.stop()
        d.wait()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
