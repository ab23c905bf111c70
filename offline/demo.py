"""The README's main job on the embedded default: the lab's calibrate-then-decode workflow, end to end.

1. simulate three small animals in the real formats, each recorded in two sessions (the same
   neurons, new trials);
2. read every file back with the readers the pipeline uses (Allen NWB reader,
   open-ephys-python-tools, SpikeInterface) and check them against the ground truth;
3. run the paper's experiments without leakage (within and across animals, pretrained and random-init
   networks, linear read-outs, GLM, temporal image, controls, the paper's protocol beside them) and
   write the report with figures and statistics;
4. build the third animal's decoder bundle from its own labelled first session, as a lab does: its
   responses counted from the bundle's own online spikes, the decoder (pretrained EfficientNet-Lite0
   or the linear read-out) chosen on the session's held-out folds, its probabilities calibrated;
5. serve that bundle with the daemon (the embedded rig config ``rig_configs/replay_local.toml``),
   replay the animal's *second* session into it in real time exactly as the Open Ephys GUI would
   stream it -- trials that never touched calibration -- and summarise: accuracy against the
   simulator's labels with its 95 % interval beside the offline within-animal figure, how well the
   probabilities are calibrated, trials decoded / degraded, latency p50 / p99, where the decision log
   and the report are.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from rtdecode.scoring import score_decisions

DEMO_ANIMALS = 3
DEMO_REPEATS = 2  # two blocks of each family: classes not confounded with time, ~2 min per session
DEMO_CHANNELS = 32
DEMO_UNITS = 48
DEMO_IMAGE_SIZE = 48
DEMO_FOLDS = 3
DEMO_SESSIONS = 2  # calibrate on the target's session 1, decode its session 2
DEMO_BACKBONES = ("efficientnet-lite0",)  # ImageNet-pretrained, installed everywhere (+ its random-init control)


def check_animal(folder: Path) -> dict:
    """Read one simulated animal back and compare it with its ground truth."""
    import spikeinterface.extractors as se
    from open_ephys.analysis import Session
    from rtdecode.offline.allen import open_session

    m = json.loads((folder / "animal.json").read_text())
    log = pd.read_csv(folder / m["stimulus_log"])
    with open_session(folder / m["nwb"]) as s:
        units = s.units()
        trials = s.trials()
    n_nat, n_art = (int(trials.label.eq(k).sum()) for k in ("natural", "artificial"))
    row = {
        "animal": m["name"],
        "units kept (VISp, quality)": f"{len(units)}/{m['units']}",
        "trials natural/artificial": f"{n_nat}/{n_art}",
    }
    if m["recording"]:
        rec_dir = folder / m["recording"]
        oe = Session(str(rec_dir)).recordnodes[0].recordings[0]
        events = oe.events
        onsets = events[(events.state == 1) & (events.line == m["ttl_line"] + 1)].sample_number.to_numpy()
        si_rec = se.read_openephys(str(rec_dir))
        a = oe.continuous[0].get_samples(0, 3000)
        b = si_rec.get_traces(start_frame=0, end_frame=3000, return_in_uV=True)
        row["recording"] = f"{si_rec.get_num_channels()} ch, {si_rec.get_total_duration():.0f} s"
        row["TTL onsets = log"] = str(np.array_equal(onsets, log.onset_sample.to_numpy()))
        row["readers agree (uV)"] = f"{np.abs(a - b).max():.1e}"
    return row


def _pct(score: dict) -> str:
    return f"{score['accuracy']:.0%} [{score['ci95'][0]:.0%}, {score['ci95'][1]:.0%}]"


def run_demo(out: Path, seed: int, console: Console, progress) -> None:
    from rtdecode.offline.build import BuildConfig, build_bundle
    from rtdecode.offline.dataset import load_animal
    from rtdecode.offline.evaluate import EvaluationConfig, default_combinations, run_evaluation
    from rtdecode.offline.parallel import Executor
    from rtdecode.offline.report import label, reading, write_report
    from rtdecode.offline.sim.simulate import SimulationParams, simulate

    from rtdecode.bundle import verify_bundle

    out = Path(out)
    console.rule("rtdecode demo")
    console.print(
        f"1. Simulating {DEMO_ANIMALS} animals ({DEMO_CHANNELS} channels, {DEMO_UNITS} units, "
        f"{DEMO_REPEATS} repeats of 118 scenes + 120 gratings, {DEMO_SESSIONS} sessions each) into {out}/ ..."
    )
    params = SimulationParams(
        animals=DEMO_ANIMALS,
        channels=DEMO_CHANNELS,
        units=DEMO_UNITS,
        repeats=DEMO_REPEATS,
        seed=seed,
        sessions=DEMO_SESSIONS,
    )
    with progress:
        folders = simulate(params, out / "animals", progress=progress)
        console.print("2. Reading every file back (Allen NWB reader, open-ephys-python-tools, SpikeInterface) ...")
        table = Table(title="simulated animals, read back")
        rows = [check_animal(f) for f in folders]
        for col in rows[0]:
            table.add_column(col)
        for r in rows:
            table.add_row(*r.values())
        console.print(table)

        console.print(
            f"3. The paper's experiments, leakage-free ({DEMO_FOLDS}-fold within animals, leave-one-out "
            f"across animals, {DEMO_IMAGE_SIZE}x{DEMO_IMAGE_SIZE} neural images) ..."
        )
        with Executor("none") as ex:
            datasets = [load_animal(f, DEMO_IMAGE_SIZE) for f in folders]
            names = [d.name for d in datasets]
            loo = [c for c in default_combinations(names) if len(c[0]) == len(names) - 1]
            cfg = EvaluationConfig(
                folds=DEMO_FOLDS,
                image_size=DEMO_IMAGE_SIZE,
                seed=seed,
                combinations=loo,
                backbones=DEMO_BACKBONES,
            )
            report = run_evaluation(datasets, cfg, ex, progress)
            report_md = write_report(report, {d.name: d for d in datasets}, out / "report")
        models = [n["model"] for n in report["networks"]] + ["linear_image_pca", "glm", "shuffled_labels"]
        res = Table(title="decoding accuracy (95 % CI)")
        res.add_column("animal")
        for m in models:
            res.add_column(label(m))
        for e in report["within_animal"] + report["across_animal"]:
            where = e["animal"] if e["setting"] == "within" else f"[{','.join(e['train'])}]→{e['target']}"
            res.add_row(where, *(_pct(e["scores"][m]) if m in e["scores"] else "-" for m in models))
        console.print(res)
        for line in reading(report):
            console.print(f"   - {line}")

        target = folders[-1]
        console.print(
            f"4. Building {target.name}'s decoder bundle from its own labelled session 1 (ground-truth templates on "
            "the daemon's preprocessing; responses from the bundle's own online spikes) ..."
        )
        bundle = out / f"{target.name}.bundle"
        with tempfile.TemporaryDirectory(prefix="rtdecode-demo-") as work:
            built = build_bundle(
                [],
                {},
                target,
                bundle,
                BuildConfig(
                    templates="ground-truth",
                    image_size=DEMO_IMAGE_SIZE,
                    seed=seed,
                    decoder="auto",
                    backbone=DEMO_BACKBONES[0],
                ),
                None,
                Path(work),
                progress=progress,
                log=lambda msg: console.print(f"   {msg}"),
                overwrite=True,
            )
    manifest = verify_bundle(bundle)
    console.print(
        f"   bundle verified: {len(manifest.files)} files, {manifest.n_units} units, decoder "
        f"{manifest.architecture.name}, held-out accuracy on session 1 {manifest.heldout_accuracy:.0%}"
    )
    within = next(e for e in report["within_animal"] if e["animal"] == target.name)
    offline_model = "linear_image_pca" if built["decoder"] == "linear" else report["primary_network"]
    session2 = target.parent / f"{target.name}-s2"
    summary = run_online(
        bundle,
        session2,
        out,
        console,
        offline={**within["scores"][offline_model], "model": label(offline_model)},
    )
    from rtdecode.offline.session_report import report_session

    report_session(Path(summary["log"]), out / "session_report", summary["stimulus_log"])
    console.print(
        f"\nDone. Report: {report_md}\nBundle: {bundle} (check it with `rtdecode bundle verify {bundle}`)\n"
        f"Decision log: {summary['log']}\nSession 2 as served (timeline, accuracy over time, latency): "
        f"{out / 'session_report' / 'report.md'}"
    )


def run_online(
    bundle: Path, target: Path, out: Path, console: Console, speed: float = 1.0, offline: dict | None = None
) -> dict:
    """Serve the bundle and replay ``target``'s recording (a session that did not calibrate it) through
    it; print the summary, with the offline within-animal score ``offline`` beside the online one."""
    from rtdecode.offline.bench.session import replay_through_daemon

    from rtdecode import rig_configs

    cfg = rig_configs.load("replay_local.toml")
    m = json.loads((target / "animal.json").read_text())
    console.print(
        f"5. Serving the bundle and replaying {target.name} (session {m.get('session', 1)}: none of its "
        f"trials calibrated the bundle; {m['duration_s']:.0f} s) at {speed:g} x real time through the ZMQ "
        f"Interface protocol on {cfg.stream.host}:{cfg.stream.data_port} ..."
    )
    res = replay_through_daemon(bundle, target / m["recording"], cfg, out / "decisions.jsonl", speed=speed)
    stimulus_log = target / m["stimulus_log"]
    labels = pd.read_csv(stimulus_log).set_index("onset_sample").label
    s = score_decisions(res.decisions, labels)
    c = res.status["counters"]
    lat = res.status["latency"]

    def p(stage: str, digits: int) -> str:
        return f"{lat[stage]['p50_ms']:.{digits}f} / {lat[stage]['p99_ms']:.{digits}f} ms" if stage in lat else "-"

    table = Table(title="online decoding (rtdecode serve <- rtdecode replay)")
    table.add_column("measure", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    for row in (
        (
            "stimulus onsets / decisions",
            f"{c['onsets']} / {len(res.decisions)}"
            + (" (every onset decided)" if c["onsets"] == len(res.decisions) else " -- NOT every onset decided"),
        ),
        ("decoded / degraded", f"{len(res.decisions) - c['degraded']} / {c['degraded']}"),
        (
            "accuracy on session 2 vs simulator labels (95 % CI)",
            f"{s['accuracy']:.1%} [{s['ci95'][0]:.1%}, {s['ci95'][1]:.1%}] ({s['correct']}/{s['n']})",
        ),
        (
            "within-animal offline, same animal (95 % CI)",
            "-"
            if offline is None
            else f"{offline['accuracy']:.1%} [{offline['ci95'][0]:.1%}, {offline['ci95'][1]:.1%}] ({offline['model']})",
        ),
        ("Brier score of p(natural) (0.25 = a coin)", f"{s['brier']:.3f}"),
        ("right among decisions with p > 0.99", f"{s['confident_right']:.1%} of {s['confident']}"),
        ("share called natural (truth: about half)", f"{s['natural_share_predicted']:.0%}"),
        ("image scale, session 2 / calibration", f"{res.status['image_scale']['ratio']:.2f}"),
        ("latency block -> decision p50 / p99", p("total", 1)),
        ("  of which inference p50 / p99", p("inference", 2)),
        ("blocks / malformed / overruns", f"{c['blocks']} / {c['malformed']} / {c['overruns']}"),
        ("backend", res.status["backend"]),
    ):
        table.add_row(*row)
    console.print(table)
    if c["onsets"] != len(res.decisions):
        console.print(f"[red]error[/red]: {c['onsets']} onsets but {len(res.decisions)} decisions")
        raise SystemExit(1)
    return {
        "log": res.log_path,
        "decisions": res.decisions,
        "status": res.status,
        "score": s,
        "stimulus_log": stimulus_log,
    }
