"""`rtdecode report-session` on a served session's log: its numbers are the log's, figures written."""

import json
import subprocess
import sys

import pandas as pd
from rtdecode.replay.replayer import Fault

from .test_reliability import ONSETS, _serve, short_recording  # noqa: F401 (fixture)


def test_a_served_sessions_report_counts_what_the_log_holds(bundle, short_recording, tmp_path):  # noqa: F811
    # one channel's message lost mid-run (trials over it degraded, a gap logged), then a stop/start
    res, log = _serve(bundle, short_recording, tmp_path, [Fault.parse("drop=1000"), Fault.parse("restart=2500")])
    labels = ["natural" if i % 2 else "artificial" for i in range(len(ONSETS))]
    labels[0] = "blank"  # not a natural/artificial trial: not scored
    stim = tmp_path / "stimulus_log.csv"
    pd.DataFrame({"onset_sample": ONSETS, "label": labels}).to_csv(stim, index=False)
    out = tmp_path / "report"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rtdecode",
            "report-session",
            str(res.log_path),
            "--labels",
            str(stim),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    decisions = [r for r in log if "seq" in r]
    degraded = [d for d in decisions if d["status"] != "ok"]
    assert degraded and s["decisions"] == len(decisions) == len(ONSETS) and s["ok"] == len(decisions) - len(degraded)
    reasons: dict[str, int] = {}
    for d in degraded:
        assert d["status"] == "degraded: " + "; ".join(d["reasons"])
        for r in d["reasons"]:
            reasons[r] = reasons.get(r, 0) + 1
    assert s["degraded_by_reason"] == reasons
    gaps = [r for r in log if r.get("event") == "gap"]
    assert gaps and s["gaps"]["count"] == len(gaps)
    assert [r["run_id"] for r in s["runs"]] == [log[0]["run_id"]] and s["runs"][0]["segments"] == 2
    truth = dict(zip(ONSETS.tolist(), labels, strict=True))
    scored = [d for d in decisions if d["status"] == "ok" and truth[d["onset_sample"]] != "blank"]
    right = sum((d["probabilities"]["natural"] >= 0.5) == (truth[d["onset_sample"]] == "natural") for d in scored)
    assert s["accuracy"]["n"] == len(scored) and s["accuracy"]["correct"] == right
    assert set(s["figures"]) == {"timeline.png", "accuracy.png", "latency.png"}
    assert all((out / f).stat().st_size > 10_000 for f in s["figures"])
    md = (out / "report.md").read_text()
    assert log[0]["run_id"] in md and f"{s['decisions']} decisions" in md and "![timeline.png](timeline.png)" in md


def test_a_file_that_is_not_a_decision_log_is_named(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"event": "start"}\nnot json\n')
    proc = subprocess.run(
        [sys.executable, "-m", "rtdecode", "report-session", str(bad), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{bad}, line 2: not JSON" in proc.stderr
