"""The offline builder's commands, registered onto the ``rtdecode`` command line by :func:`register`.

``demo``, ``simulate``, ``session info``, ``evaluate``, ``build``, ``report-session``, ``sort`` and
``bench offline|online|receiver|soak|drift``. Heavy imports
stay inside the commands, so ``rtdecode --help`` is fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rtdecode.offline.sim.drift import SECOND_SESSION, SPEC_HELP

from rtdecode.console import HELP_MARKUP, console, err_console, progress_bar
from rtdecode.errors import RtdecodeError
from rtdecode.parameters import default

session_app = typer.Typer(help="Allen-layout NWB session files.", no_args_is_help=True, rich_markup_mode=HELP_MARKUP)
bench_app = typer.Typer(
    help="Benchmarks that print ratios measured side by side.", no_args_is_help=True, rich_markup_mode=HELP_MARKUP
)


def register(app: typer.Typer) -> None:
    """Add the builder's commands to ``app``."""
    app.command()(simulate)
    app.command()(evaluate)
    app.command()(build)
    app.command()(demo)
    app.command("report-session")(report_session)
    app.command("sort")(sort)
    app.add_typer(session_app, name="session")
    app.add_typer(bench_app, name="bench")


# ------------------------------------------------------------------------------------------------
def demo(
    out: Annotated[Path, typer.Option("--out", help="where the demo writes its files")] = Path("demo_out"),
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """The main job on the embedded default: simulate, evaluate, build a bundle from the target's first
    session, serve it and replay the target's second session through it."""
    from rtdecode.offline.demo import run_demo

    run_demo(out, seed, console=console, progress=progress_bar())


# ------------------------------------------------------------------------------------------------
def report_session(
    log: Annotated[
        Path, typer.Argument(help="a decision log (serve's --log, or decode's)", exists=True, dir_okay=False)
    ],
    out: Annotated[Path, typer.Option("--out", help="folder for report.md, summary.json and the figures")],
    labels: Annotated[
        Path | None,
        typer.Option(help="stimulus log CSV with onset_sample and label columns: accuracy over time", dir_okay=False),
    ] = None,
) -> None:
    """A served session after the fact: p(natural) per trial on the session's time axis with degraded
    trials, gaps and restarts marked; accuracy over time with intervals (with --labels); latency per
    stage over time and as histograms; runs, degraded reasons and latency percentiles in report.md."""
    from rtdecode.offline.session_report import report_session as make_report

    s = make_report(log, out, labels)
    acc = ""
    if "accuracy" in s:
        a = s["accuracy"]
        acc = f"; accuracy {100 * a['accuracy']:.1f} % [{100 * a['ci95'][0]:.1f}, {100 * a['ci95'][1]:.1f}] of {a['n']}"
    console.print(
        f"{s['decisions']} decisions ({s['ok']} ok) in {len(s['runs'])} run(s){acc}; report: {out / 'report.md'}"
    )


# ------------------------------------------------------------------------------------------------
def sort(
    recording: Annotated[Path, typer.Argument(help="an Open Ephys Binary recording folder", exists=True)],
    bundle: Annotated[Path, typer.Option("--bundle", help="the decoder bundle whose templates sort it", exists=True)],
    out: Annotated[Path, typer.Option("--out", help="a new folder for the sorting")],
    format: Annotated[
        str, typer.Option("--format", help="spikeinterface (a sorting folder for spikeinterface.load) or phy")
    ] = "spikeinterface",
    seed: Annotated[int, typer.Option(help="block sizes of the replay-like pass (GUI-like, from this seed)")] = 0,
) -> None:
    """Sort a recording with a bundle's templates: the bundle's own preprocessing and matcher, as the
    daemon runs them. Unit ids are the bundle's, so a unit keeps its id across sessions; on a simulated
    recording the sorting is scored against the ground truth."""
    from rtdecode.offline.sort_with_bundle import sort_with_bundle

    with progress_bar() as progress:
        s = sort_with_bundle(recording, bundle, out, format, progress=progress, seed=seed)
    truth = s["ground_truth"]
    vs = (
        f"; against the ground truth: mean accuracy {truth['mean_accuracy']:.2f}, {truth['well_detected']} of "
        f"{truth['n_ground_truth_units']} units at >= 0.8"
        if truth
        else ""
    )
    console.print(f"{s['spikes']} spikes of {s['units']} units written as {s['format']} to {out}{vs}")


# ------------------------------------------------------------------------------------------------
def simulate(
    out: Annotated[Path, typer.Option("--out", help="folder to write the animals into (M0, M1, ...)")],
    animals: Annotated[int, typer.Option(help="number of animals")] = 1,
    channels: Annotated[int, typer.Option(help="recorded channels of a Neuropixels 1.0 (8-384)")] = 32,
    units: Annotated[int, typer.Option(help="units per animal")] = 48,
    repeats: Annotated[int, typer.Option(help="repeats of every stimulus condition (50 in the Allen data)")] = 3,
    seed: Annotated[int, typer.Option(help="random seed; the same seed gives the same files")] = 0,
    frame_scale: Annotated[
        float, typer.Option(help="stimulus frame size relative to the 918x1174 Allen template")
    ] = 0.25,
    recording: Annotated[
        bool, typer.Option("--recording/--no-recording", help="write the 30 kHz Open Ephys recording")
    ] = True,
    ttl_line: Annotated[int, typer.Option(help="0-based TTL line of stimulus onsets")] = 0,
    sessions: Annotated[
        int,
        typer.Option(help="sessions per animal: the same units, templates and probe, new trials (M0, M0-s2, ...)"),
    ] = 1,
    drift: Annotated[
        str,
        typer.Option(
            help="probe motion along the shank, e.g. 'trend=3,sine=5/60,step=15@120,between=20': " + SPEC_HELP
        ),
    ] = "",
) -> None:
    """Simulate ground-truth animals in the real formats (Allen NWB, Open Ephys Binary, stimuli)."""
    from rtdecode.offline.sim.simulate import SimulationParams
    from rtdecode.offline.sim.simulate import simulate as run_simulation

    params = SimulationParams(
        animals=animals,
        channels=channels,
        units=units,
        repeats=repeats,
        seed=seed,
        frame_scale=frame_scale,
        write_recording=recording,
        ttl_line=ttl_line,
        sessions=sessions,
        drift=drift,
    )
    try:
        params.validate()
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    with progress_bar() as progress:
        firsts = run_simulation(params, out, progress=progress)
    folders = [f for first in firsts for f in [first, *sorted(out.glob(f"{first.name}-s*"))]]
    table = Table(title=f"simulated {len(firsts)} animal(s) x {sessions} session(s) in {out}")
    for col in ("animal", "session", "trials", "duration", "channels", "units", "recording"):
        table.add_column(col)
    for folder in folders:
        m = json.loads((folder / "animal.json").read_text())
        table.add_row(
            m["name"],
            m["nwb"],
            str(m["n_trials"]),
            f"{m['duration_s']:.1f} s",
            str(m["channels"]),
            str(m["units"]),
            str(folder / m["recording"]) if m["recording"] else "-",
        )
    console.print(table)


# ------------------------------------------------------------------------------------------------
@session_app.command("info")
def session_info(
    nwb: Annotated[Path, typer.Argument(help="session NWB file (Allen Visual Coding Neuropixels layout)")],
    area: Annotated[str, typer.Option(help="brain area of the units to keep ('all' keeps every area)")] = "VISp",
    no_quality_filter: Annotated[
        bool, typer.Option("--no-quality-filter", help="keep units failing the AllenSDK default metrics")
    ] = False,
) -> None:
    """Read an Allen-layout session and summarise its units and stimulus presentations."""
    from rtdecode.offline.allen import UnitFilter, open_session

    f = UnitFilter(area=None if area == "all" else area)
    if no_quality_filter:
        f = UnitFilter.no_quality(f.area)
    with open_session(nwb, f) as s:
        all_units = s.all_units()
        units = s.units()
        trials = s.trials(include_blanks=True)
        invalid = s.invalid_stimulus_intervals()
        console.print(f"[bold]{nwb}[/bold]: session {s.session_id}, type {s.session_type}")
        console.print(
            f"units: {len(units)} kept of {len(all_units)} "
            f"(area {area}; areas in file: {all_units.location.value_counts(dropna=False).to_dict()})"
        )
        console.print(f"presentations: {trials.groupby(['family', 'label']).size().to_dict()}")
        console.print(f"invalid 'stimulus' intervals dropped: {len(invalid)}")


# ------------------------------------------------------------------------------------------------
def expand_sessions(paths: list[Path]) -> list[Path]:
    """Animal folders (with animal.json), folders of animal folders, or session .nwb files."""
    from rtdecode.errors import NWBLayoutError

    out: list[Path] = []
    for p in paths:
        if p.is_file() or (p / "animal.json").is_file():
            out.append(p)
        elif p.is_dir():
            found = sorted(q.parent for q in p.glob("*/animal.json"))
            if not found:
                raise NWBLayoutError(f"{p}: no animal folders (*/animal.json) and not a session file")
            out.extend(found)
        else:
            raise NWBLayoutError(f"{p}: no such session folder or file")
    return out


def load_sessions(executor, paths: list[Path], image_size: int, area: str, stimuli: Path | None):
    """Submit one loading task per session; returns (datasets, refs) keyed by animal name."""
    from rtdecode.offline.allen import UnitFilter
    from rtdecode.offline.dataset import load_animal

    f = UnitFilter(area=None if area == "all" else area)
    futures = [executor.submit(load_animal, p, image_size, unit_filter=f, stimuli=stimuli) for p in paths]
    datasets = [fu.result() for fu in futures]
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise typer.BadParameter(f"sessions must have distinct animal names, got {names}")
    return datasets, {d.name: fu for d, fu in zip(datasets, futures, strict=True)}


def evaluate(
    sessions: Annotated[
        list[Path],
        typer.Option(
            "--sessions", metavar="PATH", help="an animal folder, a folder of them, or a session .nwb; repeatable"
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="report folder (report.md, report.json, figures)")],
    folds: Annotated[int, typer.Option(help="within-animal folds")] = 5,
    image_size: Annotated[int, typer.Option(help="neural image / network input size (paper: 224)")] = default(
        "build.image_size"
    ),
    mode: Annotated[str, typer.Option(help="head (frozen ImageNet features) or finetune (all layers)")] = "head",
    epochs: Annotated[int, typer.Option(help="training epochs when all layers are trained")] = 10,
    weights: Annotated[
        Path | None, typer.Option(help="torchvision ImageNet GoogLeNet checkpoint (googlenet-1378be20.pth)")
    ] = None,
    combination: Annotated[
        list[str] | None,
        typer.Option("--combination", help="across-animal TRAIN[,TRAIN]:TARGET (repeatable)"),
    ] = None,
    calibration_fraction: Annotated[float, typer.Option(help="target trials that fit its PS and baseline")] = 0.5,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    area: Annotated[str, typer.Option(help="brain area of the units ('all' = every area)")] = "VISp",
    stimuli: Annotated[Path | None, typer.Option(help="natural-scene templates for bare .nwb sessions")] = None,
    scheduler: Annotated[
        str, typer.Option(help="'local' (Dask LocalCluster), a scheduler address, or 'none' (in-process)")
    ] = "local",
    protocol: Annotated[
        str,
        typer.Option(
            help="'paper' (default): beside the leakage-free numbers, the same experiments under the paper's "
            "leaky protocol (PS and baseline fit on all trials), with the inflation; 'leakage-free': ours only"
        ),
    ] = "paper",
    backbone: Annotated[
        list[str] | None,
        typer.Option(
            "--backbone",
            help="network(s) on neural images: googlenet (the paper's; ImageNet weights only with --weights) and/or "
            "efficientnet-lite0 (ImageNet-pretrained, weights installed); repeatable, the first is the primary "
            "network of the controls, the paper's protocol and the learning curve [default: both]",
        ),
    ] = None,
    random_init_control: Annotated[
        bool,
        typer.Option(help="beside every pretrained network, the same network from random initialisation"),
    ] = True,
    split: Annotated[
        str,
        typer.Option(
            help="how folds and the target's calibration split are cut: trial (stratified random), image (a scene "
            "or grating never in both training and test) or block (whole stimulus blocks)"
        ),
    ] = "trial",
    permutations: Annotated[
        int, typer.Option(help="label permutations of the linear read-out's permutation test (0 skips it)")
    ] = 200,
    learning_curve: Annotated[
        bool,
        typer.Option(
            help="accuracy against the number (random subsets) and the first minutes of the target's calibration "
            "trials; the longest part of a run after the networks"
        ),
    ] = True,
) -> None:
    """Run the paper's experiments without leakage (and under the paper's protocol beside them) and
    write a report with figures and the statistics behind every comparison."""
    from rtdecode.offline.evaluate import EvaluationConfig, parse_combination, run_evaluation
    from rtdecode.offline.parallel import Executor
    from rtdecode.offline.report import reading, write_report

    try:
        combos = [parse_combination(c) for c in combination] if combination else None
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    if protocol not in ("paper", "leakage-free"):
        raise typer.BadParameter(f"--protocol {protocol!r}: expected paper or leakage-free")
    cfg = EvaluationConfig(
        paper_protocol=protocol == "paper",
        folds=folds,
        image_size=image_size,
        mode=mode,
        finetune_epochs=epochs,
        seed=seed,
        calibration_fraction=calibration_fraction,
        combinations=combos,
        weights=str(weights) if weights else None,
        backbones=tuple(backbone) if backbone else ("googlenet", "efficientnet-lite0"),
        random_init_control=random_init_control,
        split=split,
        permutations=permutations,
        learning_curve=learning_curve,
    )
    try:
        cfg.validate(0)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    paths = expand_sessions(sessions)
    with Executor(scheduler) as executor:
        console.print(f"{len(paths)} session(s); per-session work on {executor.description}")
        datasets, refs = load_sessions(executor, paths, image_size, area, stimuli)
        for d in datasets:
            console.print(f"  {d.name}: {d.n_trials} trials ({int(d.labels.sum())} natural), {d.n_units} units")
        try:
            cfg.validate(len(datasets))
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
        with progress_bar() as progress:
            report = run_evaluation(datasets, cfg, executor, progress, refs=refs)
    console.print(f"classifier: {report['classifier']}")
    path = write_report(report, {d.name: d for d in datasets}, out)
    for line in reading(report):
        console.print(f"- {line}")
    console.print(f"report: {path}")


# ------------------------------------------------------------------------------------------------
def build(
    target: Annotated[
        Path,
        typer.Option(
            "--target",
            help="the rig animal's labelled calibration session (folder with its recording and stimulus log): "
            "the classifier trains on it",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="bundle directory to create")],
    train: Annotated[
        list[Path] | None,
        typer.Option(
            "--train",
            metavar="DIR",
            help="extra training data: another animal's session (animal folder, or a folder of them); repeatable",
        ),
    ] = None,
    templates: Annotated[
        str, typer.Option(help="kilosort4 (sort the recording) or ground-truth (simulator)")
    ] = "kilosort4",
    spikes: Annotated[
        str,
        typer.Option(
            help="whose spikes the calibration responses are counted from: online (the bundle's own matcher over "
            "the calibration recording -- what the daemon will see) or sorter (the sort's spikes)"
        ),
    ] = "online",
    image_size: Annotated[int, typer.Option(help="neural image / network input size (paper: 224)")] = default(
        "build.image_size"
    ),
    decoder: Annotated[
        str,
        typer.Option(
            help="network (a backbone with a trained head), linear (logistic regression on the neural image's "
            "first 20 principal components: microseconds per trial on a CPU rig; same export and backends), or "
            "auto (both, keeping the better on the calibration session's held-out folds)"
        ),
    ] = "network",
    backbone: Annotated[
        str,
        typer.Option(
            help="the network: googlenet (the paper's; ImageNet weights only with --weights) or efficientnet-lite0 "
            "(ImageNet-pretrained weights installed with rtdecode)"
        ),
    ] = "googlenet",
    mode: Annotated[str, typer.Option(help="head (frozen features) or finetune (all layers)")] = "head",
    epochs: Annotated[int, typer.Option(help="training epochs when all layers are trained")] = 10,
    weights: Annotated[
        Path | None, typer.Option(help="ImageNet weights of the backbone (googlenet-1378be20.pth for GoogLeNet)")
    ] = None,
    folds: Annotated[
        int, typer.Option(help="cross-validation folds of the held-out estimate and the probability calibration")
    ] = 5,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    area: Annotated[str, typer.Option(help="brain area of the training units ('all' = every area)")] = "VISp",
    scheduler: Annotated[str, typer.Option(help="'local' (Dask LocalCluster), an address, or 'none'")] = "local",
    overwrite: Annotated[bool, typer.Option(help="replace an existing bundle at --out")] = False,
) -> None:
    """Build a decoder bundle from the target animal's labelled calibration session: sort it, count its
    responses from the daemon's own spikes, train (with other sessions as extra data if given), calibrate
    the probabilities, export ONNX, write atomically."""
    import tempfile

    from rtdecode.offline.build import BuildConfig, build_bundle
    from rtdecode.offline.parallel import Executor

    if templates not in ("kilosort4", "ground-truth"):
        raise RtdecodeError(f"--templates {templates!r}: expected kilosort4 or ground-truth")
    if not (target / "animal.json").is_file():
        raise RtdecodeError(f"--target {target}: expected an animal folder with animal.json")
    cfg = BuildConfig(
        templates=templates,
        image_size=image_size,
        mode=mode,
        epochs=epochs,
        weights=str(weights) if weights else None,
        seed=seed,
        decoder=decoder,
        backbone=backbone,
        spikes=spikes,
        folds=folds,
    )
    try:
        cfg.validate()
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    paths = expand_sessions(train or [])
    same = [p for p in paths if p.resolve() == target.resolve()]
    if same:
        raise RtdecodeError(
            f"--train {same[0]} is the --target session: its trials are the training data already; give other "
            "sessions with --train"
        )
    with (
        Executor(scheduler if paths else "none") as executor,
        tempfile.TemporaryDirectory(prefix="rtdecode-build-") as work,
    ):
        datasets, refs = [], {}
        if paths:
            console.print(f"{len(paths)} extra training session(s); per-session work on {executor.description}")
            datasets, refs = load_sessions(executor, paths, image_size, area, None)
        with progress_bar() as progress:
            build_bundle(
                datasets,
                refs,
                target,
                out,
                cfg,
                executor,
                Path(work),
                progress=progress,
                log=console.print,
                overwrite=overwrite,
            )


@bench_app.command("offline")
def bench_offline(
    out: Annotated[Path, typer.Option(help="results JSON")] = Path("bench_results/offline.json"),
    trials: Annotated[int, typer.Option(help="trials (Allen session: ~12,000)")] = 12000,
    units: Annotated[int, typer.Option(help="units (Allen session: ~400)")] = 400,
    image_size: Annotated[int, typer.Option(help="neural image size")] = 224,
    calls: Annotated[int, typer.Option(help="timed inference calls per backend")] = 60,
) -> None:
    """PS + neural images at Allen size (vs a naive loop) and ONNX Runtime vs torch eager latency."""
    from rtdecode.offline.bench.offline_bench import run_offline_bench

    with console.status("benchmarking (neural images, then inference) ..."):
        r = run_offline_bench(out, trials, units, image_size, calls)
    n = r["neural_images"]
    table = Table(
        title=f"rtdecode bench offline ({r['machine']['cpus']} CPUs, load {r['machine']['load_average'][0]:.1f})"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        (
            f"PS + images, {n['n_trials']} trials x {n['n_units']} units x {n['pixels']} px",
            f"{n['ps_plus_images_s']:.2f} s",
        ),
        ("  of which PS (per-condition GEMM)", f"{n['ps_condition_path_s']:.3f} s"),
        ("  of which images (R PS, preallocated)", f"{n['images_gemm_s']:.2f} s"),
        ("PS by direct R^T S GEMM", f"{n['ps_direct_gemm_s']:.2f} s"),
        ("naive Python loop (extrapolated)", f"{n['naive_extrapolated_s']:.0f} s"),
        ("speed-up vs naive loop", f"{n['speedup_vs_naive']:.0f}x"),
        ("speed-up per-condition vs direct PS", f"{n['speedup_condition_vs_direct_ps']:.0f}x"),
        ("peak resident memory", f"{n['peak_rss_mb']:.0f} MB"),
    ]
    for key, name in (("inference", "GoogLeNet"), ("inference_efficientnet_lite0", "EfficientNet-Lite0")):
        inf = r[key]
        rows += [
            (
                f"{name}: ONNX Runtime p50 / p99 ({inf['image_size']}^2, 1 thread)",
                f"{inf['onnxruntime_ms_p50']:.1f} / {inf['onnxruntime_ms_p99']:.1f} ms",
            ),
            (
                f"{name}: ONNX Runtime INT8 (QDQ) p50 / p99",
                f"{inf['onnxruntime_int8_ms_p50']:.1f} / {inf['onnxruntime_int8_ms_p99']:.1f} ms "
                f"({inf['speedup_int8_vs_fp32_p50']:.2f}x fp32)",
            ),
            (
                f"{name}: torch eager p50 / p99 (inference_mode, channels_last)",
                f"{inf['torch_eager_ms_p50']:.1f} / {inf['torch_eager_ms_p99']:.1f} ms",
            ),
            (f"{name}: torch plain eager p50 (no_grad, NCHW)", f"{inf['torch_plain_eager_ms_p50']:.1f} ms"),
            (f"{name}: ONNX Runtime speed-up vs torch (p50)", f"{inf['speedup_onnxruntime_vs_torch_p50']:.2f}x"),
            (f"{name}: max |logit difference|", f"{inf['max_abs_logit_diff']:.1e}"),
        ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"results: {out}")


@bench_app.command("online")
def bench_online(
    out: Annotated[Path, typer.Option(help="results JSON")] = Path("bench_results/online.json"),
    channels: Annotated[
        str, typer.Option(help="comma-separated channel counts for the sorting sweep ('' skips it)")
    ] = "64,384,1536",
    duration: Annotated[float, typer.Option(help="seconds of stream per channel count")] = 10.0,
    engines: Annotated[str, typer.Option(help="comma-separated: rtdecode, tdc-peeler, nearest")] = ",".join(
        ("rtdecode", "tdc-peeler", "nearest")
    ),
    si_max_channels: Annotated[int, typer.Option(help="run SpikeInterface engines up to this many channels")] = 384,
    whole_path_channels: Annotated[int, typer.Option(help="channels of the whole-path run (0: skip it)")] = 384,
    whole_path_duration: Annotated[float, typer.Option(help="seconds of stream replayed through the daemon")] = 30.0,
    image_size: Annotated[int, typer.Option(help="timing bundle's model input size (the rig's: 224)")] = 224,
    speed: Annotated[str, typer.Option(help="replay speed of the whole-path run: 1 (real time), N, or max")] = "1",
    precision: Annotated[
        str, typer.Option(help="model precision of the whole-path run: fp32, or int8 (the bundle's INT8 model)")
    ] = "fp32",
    protocol: Annotated[
        str, typer.Option(help="input protocol of the whole-path run: one the replayer publishes as")
    ] = "",
    preprocess_threads: Annotated[
        int, typer.Option(help="[sorting] preprocess_threads of the whole-path run (cores to spare)")
    ] = 1,
    seed: Annotated[int, typer.Option(help="seed of the synthetic streams")] = 0,
    drift: Annotated[
        str, typer.Option(help="probe motion in the sorting streams, as simulate --drift (e.g. 'trend=20')")
    ] = "",
) -> None:
    """Online sorting vs SpikeInterface engines at 64/384/1536 channels, and the whole daemon path."""
    from rtdecode.offline.bench.online_bench import ENGINES, run_online_bench

    try:
        chans = [int(c) for c in channels.split(",") if c.strip()]
        names = [e.strip() for e in engines.split(",") if e.strip()]
        rate = None if speed == "max" else float(speed)
    except ValueError:
        raise typer.BadParameter(
            f"--channels {channels!r} / --speed {speed!r}: expected integers / a number or max"
        ) from None
    if precision not in ("fp32", "int8"):
        raise typer.BadParameter(f"--precision {precision!r}: expected fp32 or int8")
    from rtdecode.offline.sim.drift import DriftSpec

    try:
        DriftSpec.parse(drift)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    from rtdecode.replay.replayer import PROTOCOLS

    protocol = protocol or PROTOCOLS[0]
    if protocol not in PROTOCOLS:
        raise typer.BadParameter(f"--protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    unknown = [e for e in names if e not in ENGINES]
    if unknown or (chans and min(chans) < 8) or not (chans or whole_path_channels):
        raise typer.BadParameter(
            f"--engines {engines!r} / --channels {channels!r}: engines from {', '.join(ENGINES)}, channel counts >= 8"
        )
    r = run_online_bench(
        out,
        chans,
        duration,
        names,
        si_max_channels,
        whole_path_channels,
        whole_path_duration,
        image_size,
        rate,
        seed,
        log=lambda m: err_console.print(m, highlight=False),
        precision=precision,
        protocol=protocol,
        preprocess_threads=preprocess_threads,
        drift=drift,
    )
    title = f"online sorting, {duration:g} s per stream ({r['machine']['cpus']} CPUs)" + (
        f", drift {drift}" if drift else ""
    )
    table = Table(title=title)
    cols = ("channels", "units", "engine", "tracking", "x real time", "preproc s", "match s", "acc", "acc SNR>=5")
    cols += ("motion err um", "template moves")
    for col in cols:
        table.add_column(col, justify="right")
    for row in r["sorting"]:
        a5 = row["mean_accuracy_snr5"]
        table.add_row(
            str(row["channels"]),
            str(row["units"]),
            row["engine"],
            ("on" if row.get("motion_tracking") else "off") if row["engine"] == "rtdecode" else "-",
            f"{row['realtime_factor']:.2f}",
            f"{row['preprocess_s']:.2f}",
            f"{row['match_s']:.2f}",
            f"{row['mean_accuracy']:.2f}",
            "-" if a5 is None else f"{a5:.2f}",
            f"{m['median_abs_error_um']:.2f}" if (m := row["motion"]) and m["estimates"] else "-",
            f"{t['moves']} (to {t['applied_um']:g} um)" if (t := row.get("templates_moved")) else "-",
        )
    if r["sorting"]:
        console.print(table)
    w = r.get("whole_path")
    if w:
        table = Table(
            title=f"whole path: {w['channels']} ch, {w['units']} units, {w['duration_s']:g} s, "
            f"{w['image_size']} px {w['precision']}, {w['protocol']}, replay speed {w['speed'] or 'max'}"
            f"{' (preloaded)' if w['replayer_preloaded'] else ''}, {w['backend']}"
        )
        for col in ("stage", "p50 ms", "p99 ms"):
            table.add_column(col, justify="right")
        for stage, v in w["latency_ms"].items():
            table.add_row(stage, f"{v['p50_ms']:.2f}", f"{v['p99_ms']:.2f}")
        console.print(table)
        cap = w["capacity"]
        console.print(
            f"onsets {w['onsets']}, decisions {w['decisions']}, degraded {w['degraded']}, overruns {w['overruns']}; "
            f"capacity {cap['stream_s']:.1f} s of stream in {cap['worker_busy_s']:.1f} s of worker time = "
            f"{cap['realtime_factor']:.2f} x real time"
        )
        mo = w.get("motion") or {}
        if mo.get("tracking") == "on":
            t = mo.get("templates") or {}
            console.print(
                f"motion tracking: last estimate {mo.get('displacement_um')} um after {mo.get('estimates')} estimates; "
                f"templates moved {t.get('moves')} times, to {t.get('applied_um')} um"
            )
        console.print(f"stream received {w['stream_s_received']:.2f} s, processed {w['stream_s_processed']:.2f} s")
        rx = w["receiver"]
        lag = rx["lag_ms"] or {}
        console.print(
            f"receiver process: {rx['cpu_s']:.2f} s CPU"
            + (f" = {1e3 * rx['cpu_per_stream_s']:.1f} ms per s of stream" if rx["cpu_per_stream_s"] else "")
            + f"; ring high water {rx['ring_high_water']} of {rx['ring_slots']} blocks, {rx['overruns']} overruns; "
            f"block waits in the ring p50 {lag.get('p50', 0):.2f} / p99 {lag.get('p99', 0):.2f} ms; "
            f"upstream lost messages {w['upstream_lost_messages']}"
        )
        if w["failed"]:
            err_console.print(f"error: the whole-path run failed: {w['failed']}")
            raise typer.Exit(1)
        if w["throughput_realtime_factor"]:
            console.print(
                f"throughput: {w['duration_s']:g} s of stream from first block to last decision in "
                f"{w['first_block_to_last_decision_s']:.1f} s = {w['throughput_realtime_factor']:.2f} x real time"
            )
    console.print(f"results: {out}")


@bench_app.command("receiver")
def bench_receiver(
    channels: Annotated[int, typer.Option(help="channels of the synthetic stream")] = 384,
    duration: Annotated[float, typer.Option(help="seconds of stream replayed per protocol")] = 20.0,
    out: Annotated[Path, typer.Option(help="results JSON")] = Path("bench_results/receiver.json"),
    seed: Annotated[int, typer.Option(help="seed of the synthetic stream")] = 0,
) -> None:
    """The receiver process's CPU per second of stream, ZMQ Interface vs Falcon Output, side by side."""
    from rtdecode.offline.bench.receiver_bench import run_receiver_bench

    if channels < 1 or not duration > 0:
        raise typer.BadParameter(f"--channels {channels} / --duration {duration}: expected >= 1 and > 0")
    r = run_receiver_bench(channels, duration, seed, log=lambda m: err_console.print(m, highlight=False))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=1, default=float))
    table = Table(
        title=f"receiver cost, {channels} ch, {duration:g} s of stream, flat out ({r['machine']['cpus']} CPUs)"
    )
    for col in ("protocol", "messages", "blocks", "stream s", "receiver CPU s", "CPU ms per stream s", "lost"):
        table.add_column(col, justify="right")
    for row in r["rows"]:
        table.add_row(
            row["protocol"],
            str(row["messages"]),
            str(row["blocks"]),
            f"{row['stream_s']:.2f}",
            f"{row['receiver_cpu_s']:.3f}",
            f"{row['receiver_cpu_ms_per_stream_s']:.2f}",
            str(row["lost_messages"]),
        )
    console.print(table)
    ratio = r["zmq_over_falcon_cpu_ratio"]
    console.print(f"ZMQ Interface / Falcon Output receiver CPU: {ratio:.1f}x; results {out}")
    if not all(row["complete"] for row in r["rows"]):
        err_console.print("error: a receiver did not deliver the whole stream")
        raise typer.Exit(1)


@bench_app.command("soak")
def bench_soak(
    minutes: Annotated[float, typer.Option(help="how long to replay at real time")] = 30.0,
    channels: Annotated[int, typer.Option(help="channels of the synthetic recording")] = 32,
    out: Annotated[Path, typer.Option(help="results JSON")] = Path("bench_results/soak.json"),
) -> None:
    """Replay a recording in a loop at real time through the daemon; report memory growth and counts."""
    from rtdecode.offline.bench.soak import run_soak

    if not minutes > 0 or channels < 8:
        raise typer.BadParameter(f"--minutes {minutes} / --channels {channels}: expected > 0 minutes and >= 8 channels")
    r = run_soak(out, minutes, channels, log=lambda m: err_console.print(m, highlight=False))
    console.print(
        f"{r['minutes']:g} min, {r['channels']} ch: RSS {r['rss_start_mb']:.0f} -> {r['rss_end_mb']:.0f} MB "
        f"({r['rss_growth_pct']:+.1f} % after the first minute); {r['onsets']} onsets, {r['decisions']} decisions "
        f"({r['degraded']} degraded), {r['restarts']} restarts, {r['overruns']} overruns, "
        f"{r['internal_errors']} internal errors; results {out}"
    )
    if not r["every_onset_decided"]:
        err_console.print("error: not every onset was decided")
        raise typer.Exit(1)


@bench_app.command("drift")
def bench_drift(
    out: Annotated[Path, typer.Option(help="results JSON")] = Path("bench_results/drift_decoding.json"),
    work: Annotated[
        Path | None, typer.Option(help="keep the simulated animals and bundles here (default: a temporary folder)")
    ] = None,
    drift: Annotated[
        str, typer.Option(help=f"the drifting animal's probe motion and unit changes: {SPEC_HELP}")
    ] = SECOND_SESSION,
    channels: Annotated[int, typer.Option(help="channels of the simulated probe")] = 32,
    units: Annotated[int, typer.Option(help="units of the simulated animal")] = 48,
    repeats: Annotated[int, typer.Option(help="repeats of every stimulus per session")] = 2,
    seed: Annotated[int, typer.Option(help="seed of the simulation and the build")] = 0,
    running_baseline: Annotated[
        int,
        typer.Option(
            help="[trials] running_baseline of the decoding runs: N trials, or 0 for the bundle's calibration "
            "statistics as they are",
            min=0,
        ),
    ] = default("trials.running_baseline"),
) -> None:
    """Decoding through drift: one animal simulated still, with only its units changing between
    sessions (where --drift names lost=, gained= or rates=) and drifting (same seed), its bundle built
    from session 1, session 2 decoded through the daemon's pipeline with motion tracking on and off;
    accuracy in total and by quarter of the session; the motion estimate's median error against the
    true motion from where the bundle was calibrated (session 1's average position); the online
    sorter's accuracy against session 2's ground truth."""
    from rtdecode.offline.bench.drift_decoding import run_drift_decoding
    from rtdecode.offline.sim.drift import DriftSpec

    try:
        parsed = DriftSpec.parse(drift)
        if parsed.still and not parsed.turnover:
            raise ValueError("it describes no motion and no unit changes")
    except ValueError as err:
        raise typer.BadParameter(f"--drift {drift!r}: {err}") from None
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rtdecode-drift-") as tmp, progress_bar() as progress:
        r = run_drift_decoding(
            work or Path(tmp),
            drift,
            channels,
            units,
            repeats,
            seed=seed,
            running_baseline=running_baseline,
            log=lambda m: err_console.print(m, highlight=False),
            progress=progress,
        )
    baseline = f"running baseline over {running_baseline} trials" if running_baseline else "calibration baseline"
    zero = r["rows"][-1]["motion_zero_um"]
    table = Table(
        title=f"decoding session 2 through drift ({drift}), {channels} ch, {units} units, {baseline}; "
        f"the tracker's zero: session 1's average position, {zero:.1f} um"
    )
    for col in (
        "session",
        "motion tracking",
        "accuracy (95 % CI)",
        "degraded",
        "Q1",
        "Q2",
        "Q3",
        "Q4",
        "est. / true motion at Q4 end",
        "motion error (median)",
        "sorting accuracy",
    ):
        table.add_column(col, justify="right")
    for row in r["rows"]:
        q = row["quarters"]
        truth = row["true_motion_um_at_quarter_ends"]
        est = q[-1]["motion_um_last"]
        table.add_row(
            row["session"],
            "on" if row["motion_tracking"] else "off",
            f"{row['accuracy']:.1%} ({row['ci95'][0]:.0%}-{row['ci95'][1]:.0%})",
            str(row["degraded"]),
            *(f"{x['accuracy']:.0%}" for x in q),
            f"{'-' if est is None else f'{est:.1f}'} / {'0' if truth is None else f'{truth[-1]:.1f}'} um",
            "-" if row["motion_error_um"] is None else f"{row['motion_error_um']:.1f} um",
            "-" if row["sorting_accuracy"] is None else f"{row['sorting_accuracy']:.2f}",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=1, default=float))
    console.print(table)
    console.print(f"results: {out}")
