"""A served session, after the fact: ``rtdecode report-session decisions.jsonl [--labels LOG] --out DIR``.

Reads a decision log (the daemon's, or ``rtdecode decode``'s: the same records) and writes
``report.md``, ``summary.json`` and figures:

- ``timeline.png``: p(natural) per trial on the session's time axis, degraded trials marked by
  reason, spans of stream not seen whole (``gap`` records) shaded, restarts of the daemon (a new
  ``run_id``) and new acquisition segments as vertical lines;
- ``accuracy.png`` (with ``--labels``): accuracy over time in bins of labelled trials, each with its
  95 % Wilson interval, beside the session's overall figure;
- ``latency.png``: latency per stage over time and as histograms, with p50 / p99.

The time axis is stream time: a segment whose sample numbers go on (a stop/start) stays on its run's
clock, and one whose numbers start again (a loop, a restarted GUI) or a new run of the daemon is
laid after what came before, so the axis never folds back.
Labels come from a stimulus log CSV with ``onset_sample`` and ``label`` columns (the simulator's,
or a lab's), joined on the onset sample.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from rtdecode.errors import RtdecodeError
from rtdecode.pipeline import LATENCY_STAGES
from rtdecode.scoring import read_labels, score_decisions, wilson_interval

#: Labelled trials per bin of the accuracy-over-time figure.
ACCURACY_BIN = 50


def read_log(path: Path) -> tuple[pd.DataFrame, list[dict]]:
    """The decisions (one row each, in log order) and the other records (start, stop, gap, ...)."""
    decisions, events = [], []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise RtdecodeError(f"cannot read the decision log {path}: {err.strerror or err}") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise RtdecodeError(f"{path}, line {n}: not JSON ({err.msg}); expected one JSON object per line") from None
        if not isinstance(record, dict):
            raise RtdecodeError(f"{path}, line {n}: a JSON {type(record).__name__}; expected an object")
        (decisions if "seq" in record else events).append(record)
    if not decisions:
        raise RtdecodeError(f"{path}: no decisions in it (records with 'seq'); is it a decision log?")
    return _decision_table(decisions), events


def _decision_table(decisions: list[dict]) -> pd.DataFrame:
    rows = []
    for d in decisions:
        lat = d.get("latency_ns") or {}
        row = {
            "run_id": d.get("run_id", ""),
            "seq": d["seq"],
            "onset_sample": int(d["onset_sample"]),
            "segment": int(d.get("segment") or 1),
            "segment_first_sample": d.get("segment_first_sample"),
            "sample_rate": float(d.get("sample_rate") or 30000.0),
            "status": d["status"],
            "reasons": d.get("reasons"),  # None in a log from before decisions carried their reasons
            "predicted_class": d.get("predicted_class"),
            "p_natural": (d.get("probabilities") or {}).get("natural", np.nan),
        }
        for stage, (a, b) in LATENCY_STAGES.items():
            ta, tb = lat.get(a), lat.get(b)  # a degraded trial has no image or inference time
            row[f"{stage}_ms"] = (tb - ta) / 1e6 if ta is not None and tb is not None else np.nan
        rows.append(row)
    t = pd.DataFrame(rows)
    t["p_natural"] = t["p_natural"].astype(float)
    t["t_s"] = _session_time(t)
    return t


def _session_time(t: pd.DataFrame) -> np.ndarray:
    """Seconds on one axis. Within a run, a segment whose sample numbers go on (a stop/start) stays on
    its run's clock; one whose numbers start again (a loop, a restarted GUI) or a new run of the
    daemon is laid one second after what came before, so the axis never folds back."""
    x = np.zeros(len(t))
    end = -1.0  # the latest time laid
    clock: tuple[str, float, float] | None = None  # (run, origin sample, its time)
    for (run, _), piece in t.groupby(["run_id", "segment"], sort=False):
        onsets = piece["onset_sample"].to_numpy().astype(float)
        fs = piece["sample_rate"].to_numpy()
        if clock is None or clock[0] != run or onsets.min() < clock[1]:
            clock = (run, onsets.min(), end + 1.0 if end >= 0 else 0.0)
        x[piece.index.to_numpy()] = clock[2] + (onsets - clock[1]) / fs
        end = max(end, float(x[piece.index.to_numpy()].max()))
    return x + _first_onset_s(t)


def _first_onset_s(t: pd.DataFrame) -> float:
    """The first onset's time from its segment's first sample (the axis starts where the stream did)."""
    row = t.iloc[0]
    first = row["segment_first_sample"]
    return 0.0 if first is None or pd.isna(first) else max(0.0, (row["onset_sample"] - first) / row["sample_rate"])


def _piece_origins(t: pd.DataFrame) -> dict[tuple[str, int], tuple[float, float]]:
    """(run, segment) -> (its first onset's session time, that onset's sample): to place gap spans."""
    out = {}
    for key, piece in t.groupby(["run_id", "segment"], sort=False):
        i = piece["t_s"].idxmin()
        out[key] = (float(t.at[i, "t_s"]), float(t.at[i, "onset_sample"]))
    return out


def summarise(t: pd.DataFrame, events: list[dict], labels: pd.Series | None) -> dict:

    reasons: Counter = Counter()
    for status, rs in zip(t["status"], t["reasons"], strict=True):
        if isinstance(rs, list):  # each degraded decision counts once under each of its reasons
            reasons.update(rs)
        elif status != "ok":  # a log from before decisions carried their reasons: by status
            reasons[status.removeprefix("degraded: ")] += 1
    runs = []
    for run_id, piece in t.groupby("run_id", sort=False):
        stop = next((e for e in events if e.get("event") == "stop" and e.get("run_id") == run_id), None)
        runs.append(
            {
                "run_id": run_id,
                "decisions": len(piece),
                "ok": int((piece["status"] == "ok").sum()),
                "segments": int(piece["segment"].nunique()),
                "stopped": None if stop is None else stop.get("state"),
                "stream_s_lost": None if stop is None else (stop.get("stream_s") or {}).get("lost"),
            }
        )
    gaps = [e for e in events if e.get("event") == "gap"]
    latency = {}
    for stage in LATENCY_STAGES:
        v = t.loc[t["status"] == "ok", f"{stage}_ms"].dropna().to_numpy()
        if len(v):
            latency[stage] = {"p50_ms": float(np.percentile(v, 50)), "p99_ms": float(np.percentile(v, 99)), "n": len(v)}
    out = {
        "decisions": len(t),
        "ok": int((t["status"] == "ok").sum()),
        "degraded_by_reason": dict(reasons.most_common()),
        "runs": runs,
        "gaps": {"count": len(gaps), "lost_s": float(sum(g.get("seconds", 0.0) for g in gaps))},
        "silences": len([e for e in events if e.get("event") == "silent"]),
        "latency": latency,
        "session_s": float(t["t_s"].max()),
    }
    if labels is not None:
        records = [
            {"onset_sample": o, "status": s, "probabilities": {"natural": p}}
            for o, s, p in zip(t["onset_sample"], t["status"], t["p_natural"], strict=True)
        ]
        score = score_decisions(records, labels)
        if score["n"] == 0:
            raise RtdecodeError(
                "no decision's onset_sample is in the stimulus log's onset_sample column: is it this session's log "
                "(and the same sample-number origin)?"
            )
        out["accuracy"] = score
    return out


def _bins(t: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:

    lab = t["onset_sample"].map(labels)
    ok = t[(t["status"] == "ok") & lab.isin(["natural", "artificial"])].copy()
    ok["right"] = (ok["p_natural"] >= 0.5) == (lab[ok.index] == "natural")
    rows = []
    for start in range(0, len(ok), ACCURACY_BIN):
        b = ok.iloc[start : start + ACCURACY_BIN]
        lo, hi = wilson_interval(int(b["right"].sum()), len(b))
        rows.append({"t_s": b["t_s"].mean(), "accuracy": b["right"].mean(), "lo": lo, "hi": hi, "n": len(b)})
    return pd.DataFrame(rows)


def write_figures(t: pd.DataFrame, events: list[dict], labels: pd.Series | None, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    # the timeline
    fig, ax = plt.subplots(figsize=(11, 3.6))
    ok = t["status"] == "ok"
    truth = t["onset_sample"].map(labels) if labels is not None else pd.Series(index=t.index, dtype=object)
    groups = [
        (ok & (truth == k), c, f"ok, shown {k}") for k, c in (("natural", "tab:green"), ("artificial", "tab:purple"))
    ]
    groups.append(
        (ok & ~truth.isin(["natural", "artificial"]), "tab:blue", "ok, unlabelled" if labels is not None else "ok")
    )
    for mark, colour, name in groups:
        if mark.any():
            ax.scatter(t.loc[mark, "t_s"], t.loc[mark, "p_natural"], s=9, c=colour, label=name)
    for (reason, piece), marker in zip(t[~ok].groupby("status"), "xv^s*Pd", strict=False):
        ax.scatter(piece["t_s"], np.full(len(piece), 0.5), s=22, marker=marker, label=reason)
    origins = _piece_origins(t)
    for g in (e for e in events if e.get("event") == "gap"):
        key = (g.get("run_id", ""), int(g.get("segment", 1)))
        if key not in origins:
            continue
        t0, s0 = origins[key]
        fs = float(t["sample_rate"].iloc[0])
        ax.axvspan(t0 + (g["start_sample"] - s0) / fs, t0 + (g["end_sample"] - s0) / fs, color="tab:red", alpha=0.2)
    firsts = t.groupby(["run_id", "segment"], sort=False)["t_s"].min().to_numpy()[1:]
    for x in firsts:
        ax.axvline(x, color="k", lw=0.8, ls="--")
    ax.axhline(0.5, color="0.7", lw=0.5)
    ax.set(xlabel="session time (s; dashed: a new run or segment, red: stream not seen whole)",
           ylabel="p(natural)", ylim=(-0.05, 1.05))  # fmt: skip
    ax.legend(loc="upper right", fontsize=7, ncols=2)
    fig.tight_layout()
    fig.savefig(out / "timeline.png", dpi=110)
    plt.close(fig)
    names.append("timeline.png")
    # accuracy over time
    if labels is not None:
        b = _bins(t, labels)
        if len(b):
            fig, ax = plt.subplots(figsize=(11, 3.2))
            ax.errorbar(b["t_s"], b["accuracy"], yerr=[b["accuracy"] - b["lo"], b["hi"] - b["accuracy"]], fmt="o-")
            ax.axhline(0.5, color="0.6", ls=":", lw=1)
            ax.set(xlabel="session time (s)", ylabel=f"accuracy (bins of {ACCURACY_BIN} labelled trials, 95 % CI)",
                   ylim=(0, 1.02))  # fmt: skip
            fig.tight_layout()
            fig.savefig(out / "accuracy.png", dpi=110)
            plt.close(fig)
            names.append("accuracy.png")
    # latency
    stages = [s for s in LATENCY_STAGES if t[f"{s}_ms"].notna().any()]
    if stages:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 3.6))
        for s in stages:
            v = t.loc[ok, f"{s}_ms"]
            a1.plot(t.loc[ok, "t_s"], v, ".", ms=3, label=s)
            pos = v[v > 0].to_numpy()
            if len(pos):
                p50, p99 = np.percentile(pos, [50, 99])
                a2.hist(np.log10(pos), bins=40, histtype="step", label=f"{s}: p50 {p50:.2f}, p99 {p99:.2f} ms")
        a1.set(xlabel="session time (s)", ylabel="ms", yscale="log", title="latency per stage")
        a2.set(xlabel="log10 ms", ylabel="trials", title="distribution")
        a1.legend(fontsize=7)
        a2.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=110)
        plt.close(fig)
        names.append("latency.png")
    return names


def write_markdown(s: dict, figures: list[str], log: Path, out: Path) -> None:
    lines = [f"# Session report: `{log}`", ""]
    lines.append(f"{s['decisions']} decisions, {s['ok']} ok; {s['session_s']:.0f} s of session; "
                 f"{s['gaps']['count']} span(s) of stream not seen whole ({s['gaps']['lost_s']:.2f} s); "
                 f"{s['silences']} silence(s).")  # fmt: skip
    lines.append("")
    if "accuracy" in s:
        a = s["accuracy"]
        lines.append(
            f"**Accuracy** against the stimulus log: {100 * a['accuracy']:.1f} % [{100 * a['ci95'][0]:.1f} %, "
            f"{100 * a['ci95'][1]:.1f} %] over {a['n']} labelled ok trials; Brier {a['brier']:.3f}; decisions with "
            f"p > 0.99 or < 0.01: {a['confident']}, right {100 * a['confident_right']:.1f} %; called natural "
            f"{100 * a['natural_share_predicted']:.0f} %."
        )
        lines.append("")
    lines += ["## Runs", "", "| run_id | decisions | ok | segments | stopped | stream s lost |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for r in s["runs"]:
        lost = "—" if r["stream_s_lost"] is None else f"{r['stream_s_lost']:.2f}"
        cells = [f"`{r['run_id']}`", r["decisions"], r["ok"], r["segments"], r["stopped"] or "—", lost]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += ["", "## Degraded trials by reason", ""]
    if s["degraded_by_reason"]:
        lines += ["| reason | trials |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in s["degraded_by_reason"].items()]
    else:
        lines.append("None.")
    lines += ["", "## Latency (ok trials)", "", "| stage | p50 ms | p99 ms | n |", "| --- | --- | --- | --- |"]
    lines += [f"| {k} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {v['n']} |" for k, v in s["latency"].items()]
    lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def report_session(log: Path, out: Path, labels_path: Path | None = None) -> dict:
    t, events = read_log(log)
    labels = read_labels(labels_path) if labels_path is not None else None
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(t, events, labels)
    figures = write_figures(t, events, labels, out)
    write_markdown(summary, figures, log, out)
    (out / "summary.json").write_text(json.dumps({**summary, "figures": figures}, indent=2, default=float) + "\n")
    return summary
