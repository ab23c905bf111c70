"""The live dashboard, in a real browser: a daemon decodes a replayed recording, the dashboard
watches it, headless Chromium (Debian's chromium + chromium-driver, through Selenium) shows the
page, and what the page says is checked against the decision log. A screenshot is saved (to
``$RTDECODE_SCREENSHOTS`` when set: the README's comes from there)."""

import json
import os
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from rtdecode.daemon import Daemon
from rtdecode.dashboard.feed import DashboardFeed
from rtdecode.dashboard.server import DashboardServer, _finite
from rtdecode.errors import RtdecodeError
from tests.test_online import free_ports, rig
from tests.test_reliability import ONSETS, short_recording  # noqa: F401  (a fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _labels() -> dict[int, str]:
    """A made-up stimulus log: the daemon's own calls are scored against it, so the page's
    accuracy is checked against the log, not the decoder's merit."""
    return {int(o): ("natural" if i % 2 else "artificial") for i, o in enumerate(ONSETS)}


def _ready(s: dict) -> bool:
    """Every decision received, and a status and images asked for after the last one."""
    st = s["stream"] or {}
    return (
        s["decisions"]["seen"] == len(ONSETS)
        and st.get("decisions") == len(ONSETS)
        and bool(s["units"]["rate_hz"])
        and bool(s["images"])
        and s["images"]["latest"]["onset_sample"] == int(ONSETS[-1])
    )


def _feed(cfg) -> DashboardFeed:
    o = cfg.outputs
    return DashboardFeed(
        f"tcp://127.0.0.1:{o.decision_port}",
        f"tcp://127.0.0.1:{o.control_port}",
        labels=_labels(),
        status_every_s=0.25,
    )


def test_the_page_refuses_a_non_loopback_address_unless_told_and_never_sends_nan():
    with pytest.raises(RtdecodeError, match="not a loopback address.*--allow-remote"):
        DashboardServer(DashboardFeed("tcp://127.0.0.1:1", "tcp://127.0.0.1:2"), host="0.0.0.0", port=0)
    assert _finite({"a": [float("nan"), 1.5, {"b": float("inf")}], "c": None}) == {
        "a": [None, 1.5, {"b": None}],
        "c": None,
    }


def test_the_state_api_counts_what_the_decision_log_holds(bundle, short_recording, tmp_path):  # noqa: F811
    """Without a browser: /api/state over HTTP against the log, after the replay."""
    from rtdecode.replay.replayer import Replayer

    cfg = rig(16, tmp_path)
    log = tmp_path / "d.jsonl"
    d = Daemon(cfg, bundle, log, log=lambda *_: None)
    d.start()
    server = DashboardServer(_feed(cfg), port=free_ports(1)[0]).start()
    try:
        Replayer(short_recording, cfg.stream.data_port, speed=4.0, wait_for_heartbeat_s=10).run()
        state = _wait_state(server.url, _ready)
    finally:
        d.stop()
        d.wait()
        server.stop()
    decided = [json.loads(x) for x in log.read_text().splitlines() if '"seq"' in x]
    assert state["decisions"]["seen"] == len(decided) == len(ONSETS)
    assert state["decisions"]["by_status"] == {"ok": len(ONSETS)} and state["decisions"]["dropped"] == 0
    assert [r["seq"] for r in state["decisions"]["recent"]] == [r["seq"] for r in decided]
    right = sum(r["predicted_class"] == _labels()[r["onset_sample"]] for r in decided)
    assert (state["accuracy"]["correct"], state["accuracy"]["scored"]) == (right, len(ONSETS))
    st = state["stream"]
    assert (st["protocol"], st["channels"], st["sample_rate"]) == ("zmq-interface", 16, 30000.0)
    assert st["onsets"] == len(ONSETS) and st["gaps"] == 0
    assert len(state["units"]["rate_hz"]) == d.bundle.n_units
    assert set(state["latency"]["stages"]) >= {"sort", "inference", "total"}
    assert state["latency"]["stages"]["total"]["n"] == len(ONSETS)
    # the pictures: the latest trial's image and its class's mean, over every ok trial so far
    im = state["images"]
    assert im["latest"]["onset_sample"] == decided[-1]["onset_sample"]
    assert im["latest"]["predicted_class"] == decided[-1]["predicted_class"]
    side = min(32, d.bundle.manifest.image_size)
    assert len(im["latest"]["pixels"]) == side and all(len(row) == side for row in im["latest"]["pixels"])
    calls = {c: sum(r["predicted_class"] == c for r in decided) for c in {r["predicted_class"] for r in decided}}
    assert {c: m["trials"] for c, m in im["class_means"].items()} == calls


def _wait_state(url: str, ready, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(url + "api/state", timeout=5) as r:
            s = json.loads(r.read())
        if ready(s):
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"the dashboard's state did not become ready within {timeout_s:g} s: {s}")
        time.sleep(0.1)


@pytest.mark.browser
@pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless Chromium needs Debian's chromium and chromium-driver (apt install chromium chromium-driver)",
)
def test_the_dashboard_in_headless_chromium_shows_the_live_daemon(bundle, short_recording, tmp_path):  # noqa: F811
    from rtdecode.replay.replayer import Replayer
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    cfg = rig(16, tmp_path)
    log = tmp_path / "d.jsonl"
    d = Daemon(cfg, bundle, log, log=lambda *_: None)
    d.start()
    server = DashboardServer(_feed(cfg), port=free_ports(1)[0]).start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1250"):
        opts.add_argument(a)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    rep = Replayer(short_recording, cfg.stream.data_port, speed=1.0, wait_for_heartbeat_s=10)
    th = threading.Thread(target=rep.run)
    try:
        browser.get(server.url)
        th.start()
        text = lambda i: browser.find_element(By.ID, i).text  # noqa: E731
        wait = WebDriverWait(browser, 60, poll_frequency=0.1)
        # live: the stream is running and decisions arrive while the replay goes on
        wait.until(lambda _: text("stream-state") == "running" and int(text("decisions-count")) >= 5)
        live_count = int(text("decisions-count"))
        assert th.is_alive() and live_count < len(ONSETS), "the page caught up only after the replay"
        th.join()
        wait.until(lambda _: int(text("decisions-count")) == len(ONSETS))
        wait.until(lambda _: "%" in text("accuracy") and text("onsets") == str(len(ONSETS)))
        assert browser.find_element(By.ID, "banner").text.startswith("running")
        assert browser.find_elements(By.CSS_SELECTOR, "#timeline .scatterlayer .point")  # drawn
        assert browser.find_elements(By.CSS_SELECTOR, "#latency .barlayer .point")
        assert browser.find_elements(By.CSS_SELECTOR, "#units .barlayer .point")
        wait.until(lambda _: text("images-caption").startswith("latest ok trial at sample"))
        assert len(browser.find_elements(By.CSS_SELECTOR, "#images .heatmaplayer image")) == 2
        shot = tmp_path / "dashboard.png"
        browser.save_screenshot(str(shot))
        page = {i: text(i) for i in ("decisions-count", "decisions-ok", "decisions-degraded", "accuracy", "onsets")}
        # the daemon goes away: the page says so and keeps what it last knew
        d.stop()
        d.wait()
        wait.until(lambda _: "has not answered" in browser.find_element(By.ID, "banner").text)
        assert text("decisions-count") == str(len(ONSETS))
    finally:
        rep.stop()
        if th.is_alive():
            th.join()
        browser.quit()
        d.stop()
        d.wait()
        server.stop()
    assert shot.stat().st_size > 20_000  # a drawn page, not a blank one
    if os.environ.get("RTDECODE_SCREENSHOTS"):
        shutil.copy(shot, Path(os.environ["RTDECODE_SCREENSHOTS"]) / "dashboard.png")
    decided = [json.loads(x) for x in log.read_text().splitlines() if '"seq"' in x]
    ok = [r for r in decided if r["status"] == "ok"]
    right = sum(r["predicted_class"] == _labels()[r["onset_sample"]] for r in ok)
    assert page["decisions-count"] == str(len(decided)) == str(len(ONSETS))
    assert (page["decisions-ok"], page["decisions-degraded"]) == (str(len(ok)), str(len(decided) - len(ok)))
    assert page["accuracy"].startswith(f"{100 * right / len(ok):.1f} % [") and page["accuracy"].endswith(
        f"of {len(ok)}"
    )
