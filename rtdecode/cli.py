"""The ``rtdecode`` command line.

The service's own commands live here (config, bundle, engine, serve, status, stop, watch, decode);
the builder's (``rtdecode.offline.cli``, with ``demo``) and the replayer's (``rtdecode.replay.cli``)
register themselves onto the same app. Errors caused by input (a bad config, a file in the wrong
layout) are printed as one message naming what is wrong, and the command exits with status 2; no
traceback reaches the user.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rtdecode.console import HELP_MARKUP, console, err_console, progress_bar
from rtdecode.errors import RtdecodeError
from rtdecode.offline import cli as offline_cli
from rtdecode.replay import cli as replay_cli

app = typer.Typer(
    name="rtdecode",
    help=(
        "Real-time natural-vs-artificial stimulus decoding from Neuropixels streams (Open Ephys "
        "ZMQ Interface), and the offline tools that simulate sessions and build its decoders."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=HELP_MARKUP,
)
config_app = typer.Typer(help="Rig configuration files (TOML).", no_args_is_help=True, rich_markup_mode=HELP_MARKUP)
bundle_app = typer.Typer(
    help="Decoder bundles: verify hashes, show the manifest.", no_args_is_help=True, rich_markup_mode=HELP_MARKUP
)
engine_app = typer.Typer(
    help="TensorRT engines for a bundle (GPU rigs).", no_args_is_help=True, rich_markup_mode=HELP_MARKUP
)
app.add_typer(config_app, name="config")
app.add_typer(bundle_app, name="bundle")
app.add_typer(engine_app, name="engine")
offline_cli.register(app)
replay_cli.register(app)


# ------------------------------------------------------------------------------------------------
@config_app.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="rig config TOML, e.g. rig_configs/replay_local.toml")],
    as_json: Annotated[bool, typer.Option("--json", help="print the resolved config as JSON")] = False,
) -> None:
    """Validate a rig config and print the resolved configuration (defaults filled in)."""
    from rtdecode.config import load_rig_config

    cfg = load_rig_config(file)
    resolved = cfg.model_dump(mode="json")
    if as_json:
        print(json.dumps(resolved, indent=2))
        return
    console.print(f"[green]ok[/green]: {file} is a valid rig config ({cfg.name})")
    for section, values in resolved.items():
        if not isinstance(values, dict):
            console.print(f"{section} = {values!r}")
            continue
        console.print(f"[bold]\\[{section}][/bold]")
        for key, value in values.items():
            console.print(f"  {key} = {value!r}")


@bundle_app.command("verify")
def bundle_verify(bundle: Annotated[Path, typer.Argument(help="bundle directory")]) -> None:
    """Check the manifest and the sha256 of every file; exit 2 naming the first bad file."""
    from rtdecode.bundle import Bundle

    b = Bundle.load(bundle, verify=True)
    console.print(
        f"[green]ok[/green]: {bundle}: manifest content and {len(b.manifest.files)} files verified, "
        f"{b.n_units} units, {b.manifest.channel_count} channels at {b.manifest.sample_rate:g} Hz"
    )


@bundle_app.command("info")
def bundle_info(
    bundle: Annotated[Path, typer.Argument(help="bundle directory")],
    as_json: Annotated[bool, typer.Option("--json", help="print the whole manifest as JSON")] = False,
) -> None:
    """Print a bundle's manifest (provenance, stream facts, windows, model, held-out accuracy)."""
    from rtdecode.bundle import read_manifest, summary

    manifest = read_manifest(bundle)
    if as_json:
        print(json.dumps(manifest.model_dump(mode="json"), indent=2))
        return
    for key, value in summary(manifest).items():
        if isinstance(value, dict):
            console.print(f"[bold]{key}[/bold]:")
            for k, v in value.items():
                console.print(f"  {k}: {v}")
        else:
            console.print(f"[bold]{key}[/bold]: {value}")


@engine_app.command("build")
def engine_build(
    bundle: Annotated[Path, typer.Argument(help="bundle directory")],
    precision: Annotated[str, typer.Option(help="fp32 or fp16")] = "fp32",
    cache_dir: Annotated[Path | None, typer.Option(help="engine cache (default: <bundle>.engines next to it)")] = None,
) -> None:
    """Build and cache a TensorRT engine for this GPU from the bundle's model.onnx."""
    from rtdecode.bundle import verify_bundle
    from rtdecode.inference.base import BackendUnavailable
    from rtdecode.inference.select import default_engine_cache, tensorrt_available

    verify_bundle(bundle)
    reason = tensorrt_available()
    if reason is not None:
        print(f"error: cannot build a TensorRT engine here: {reason}", file=sys.stderr)
        raise typer.Exit(2)
    from rtdecode.inference.tensorrt_backend import cached_engine

    try:
        path, key = cached_engine(
            bundle / "model.onnx", cache_dir or default_engine_cache(bundle), precision, log=console.print
        )
    except (BackendUnavailable, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise typer.Exit(2) from None
    console.print(f"engine: {path} ({key.gpu_name}, TensorRT {key.tensorrt_version}, {key.precision})")


@config_app.command("params")
def config_params(
    markdown: Annotated[bool, typer.Option("--markdown", help="print the table as the README shows it")] = False,
) -> None:
    """The tunable parameters: name, type, default, unit, meaning (one table; configs and CLI read it)."""
    from rtdecode.parameters import PARAMETERS, markdown_table

    if markdown:
        print(markdown_table())
        return
    table = Table(title="rtdecode parameters")
    for col in ("parameter", "type", "default", "unit", "meaning"):
        table.add_column(col)
    for p in PARAMETERS.values():
        table.add_row(p.name, p.type, repr(p.default), p.unit, p.help)
    console.print(table)


# ------------------------------------------------------------------------------------------------
@app.command()
def serve(
    rig: Annotated[Path, typer.Option("--rig", help="rig config TOML (ports, stream, sorting, trials, backend)")],
    bundle: Annotated[Path, typer.Option("--bundle", help="decoder bundle directory")],
    log: Annotated[
        Path | None, typer.Option("--log", help="decision log (JSON Lines); default in decision_log_dir")
    ] = None,
) -> None:
    """Run the online daemon: subscribe to the stream, sort, decode every trial, publish decisions."""
    import signal

    from rtdecode.config import load_rig_config
    from rtdecode.daemon import Daemon

    cfg = load_rig_config(rig)
    daemon = Daemon(cfg, bundle, log, log=lambda m: err_console.print(m, highlight=False))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: daemon.stop())
    daemon.start()
    try:
        while not daemon._stop.is_set():
            daemon._stop.wait(0.5)
    finally:
        daemon.wait()
    st = daemon.status()
    c = st["counters"]
    err_console.print(
        f"stopped ({st['state']}): {c['decisions']} decisions ({c['degraded']} degraded), "
        f"{c['blocks']} blocks, {c['malformed']} malformed, {c['overruns']} overruns; log {st['decision_log']}"
    )
    if daemon.failure:
        print(f"error: {daemon.failure}", file=sys.stderr)
        raise typer.Exit(2)


def _client_curve(cfg):
    """``(client keys, server public key)`` for a rig whose daemon uses CURVE, else None."""
    o = cfg.outputs
    if not o.curve:
        return None
    from rtdecode.curve import load_keys

    if o.curve_client_key is None:
        raise RtdecodeError(
            "this rig's daemon uses CURVE: set outputs.curve_client_key to a client secret certificate "
            "whose public half is in outputs.curve_authorized_clients"
        )
    return load_keys(o.curve_client_key), load_keys(o.curve_server_key, need_secret=False).public


def _control(rig: Path, command: str) -> dict:
    from rtdecode.client import control_request
    from rtdecode.config import load_rig_config

    cfg = load_rig_config(rig)
    host = "127.0.0.1" if cfg.outputs.bind_host in ("0.0.0.0", "::") else cfg.outputs.bind_host
    try:
        return control_request(f"tcp://{host}:{cfg.outputs.control_port}", command, curve=_client_curve(cfg))
    except TimeoutError as err:
        raise RtdecodeError(str(err)) from None


@app.command()
def keys(
    out: Annotated[Path, typer.Option("--out", help="folder to write the certificates into")],
    name: Annotated[str, typer.Option(help="certificate name: NAME.key (public) and NAME.key_secret")] = "server",
) -> None:
    """Make a ZeroMQ CURVE key pair for the daemon (or a client) -- needed to bind beyond loopback."""
    from rtdecode.curve import create_keypair

    if not name or "/" in name or name.startswith("."):
        raise typer.BadParameter(f"--name {name!r}: expected a plain file name, e.g. server or rig-pc")
    if (out / f"{name}.key_secret").exists():
        raise RtdecodeError(f"{out / (name + '.key_secret')} exists; choose another --name or folder")
    public, secret = create_keypair(out, name)
    console.print(f"public: {public}\nsecret: {secret} (mode 600; keep it on this machine)")
    console.print(
        "daemon: outputs.curve_server_key = the server's .key_secret, outputs.curve_authorized_clients = a "
        "folder holding each client's .key; client: outputs.curve_client_key = its own .key_secret"
    )


@app.command()
def status(rig: Annotated[Path, typer.Option("--rig", help="rig config TOML of the running daemon")]) -> None:
    """State, counters and latency percentiles of the running daemon."""
    st = _control(rig, "status")
    console.print(
        f"[bold]{st['state']}[/bold]  backend {st['backend']}  up {st['uptime_s']:.0f} s  bundle {st['bundle']}"
    )
    if st.get("warmup_inference_ms") is not None:
        console.print(f"inference at warm-up: {st['warmup_inference_ms']:.1f} ms (median of 10)")
    if st.get("failure"):
        console.print(f"failure: {st['failure']}")
    console.print("counters: " + ", ".join(f"{k} {v}" for k, v in st["counters"].items()))
    h = st.get("decision_log_health") or {}
    if h:
        state = f"[red]cannot be written: {h['error']}[/red]" if h.get("error") else "written"
        late = f", {h['written_late']} written late" if h.get("written_late") else ""
        dropped = f", {h['dropped']} dropped" if h.get("dropped") else ""
        console.print(f"decision log {h['path']}: {state}; {h['unlogged']} record(s) not in it yet{late}{dropped}")
    g = st.get("gaps") or {}
    if g.get("count"):
        causes = ", ".join(f"{c} {v:.2f} s" for c, v in g["lost_s_by_cause"].items())
        last = g["recent"][-1] if g.get("recent") else None
        where = f"; latest: samples {last['start_sample']}-{last['end_sample']} ({last['cause']})" if last else ""
        missing = "; stimulus onsets in them may be missing" if g.get("onsets_may_be_missing") else ""
        console.print(f"stream not seen whole: {g['count']} span(s), {g['lost_s']:.2f} s ({causes}){where}{missing}")
    cap = st.get("capacity") or {}
    if cap.get("realtime_factor"):
        console.print(
            f"capacity: {cap['stream_s']:.1f} s of stream in {cap['worker_busy_s']:.1f} s of worker time "
            f"= {cap['realtime_factor']:.1f} x real time"
        )
    table = Table(title="latency per stage (ms)")
    for col in ("stage", "p50", "p99", "n"):
        table.add_column(col)
    for stage, v in st["latency"].items():
        table.add_row(stage, f"{v['p50_ms']:.2f}", f"{v['p99_ms']:.2f}", str(v["n"]))
    console.print(table)


@app.command()
def stop(rig: Annotated[Path, typer.Option("--rig", help="rig config TOML of the running daemon")]) -> None:
    """Ask the running daemon to drain its queue, close its log and exit."""
    r = _control(rig, "stop")
    console.print(f"daemon: {r.get('state', r)}")


@app.command()
def watch(
    rig: Annotated[Path, typer.Option("--rig", help="rig config TOML of the running daemon")],
    count: Annotated[int, typer.Option(help="stop after this many decisions (0 = until Ctrl-C)")] = 0,
) -> None:
    """Print decisions as they are published."""
    from rtdecode.client import DecisionClient
    from rtdecode.config import load_rig_config

    cfg = load_rig_config(rig)
    host = "127.0.0.1" if cfg.outputs.bind_host in ("0.0.0.0", "::") else cfg.outputs.bind_host
    n = 0
    with DecisionClient(f"tcp://{host}:{cfg.outputs.decision_port}", curve=_client_curve(cfg)) as client:
        try:
            for d in client.decisions(timeout_s=0.5, stop=lambda: False):
                n += 1
                p = d["probabilities"] or {}
                lat = d["latency_ns"]
                total = (lat["published"] - lat["block_arrival"]) / 1e6
                console.print(
                    f"#{d['seq']:>5} onset {d['onset_sample']:>10}  {d['predicted_class'] or '-':>10}  "
                    f"p(natural) {p.get('natural', float('nan')):.2f}  spikes {d['n_spikes']:>4}  "
                    f"{total:6.1f} ms  {d['status']}" + (f"  (dropped {client.dropped})" if client.dropped else ""),
                    highlight=False,
                )
                if count and n >= count:
                    break
        except KeyboardInterrupt:
            pass


@app.command()
def dashboard(
    rig: Annotated[Path, typer.Option("--rig", help="rig config TOML of the daemon to watch")],
    port: Annotated[int, typer.Option(help="HTTP port of the page")] = 8050,
    host: Annotated[str, typer.Option(help="address to serve on (loopback unless --allow-remote)")] = "127.0.0.1",
    labels: Annotated[
        Path | None,
        typer.Option(help="stimulus log CSV (onset_sample, label): the page shows accuracy so far"),
    ] = None,
    allow_remote: Annotated[
        bool, typer.Option(help="serve on a non-loopback address (the page has no authentication)")
    ] = False,
) -> None:
    """Serve a live page of the running daemon: stream health, unit rates, decisions, latency, accuracy.

    A process of its own: it reads the daemon's decision feed and asks its control socket for status
    once a second, so it never slows decoding; it keeps going when the daemon restarts or the stream
    pauses, and says so on the page. Open the printed address in a browser; Ctrl-C stops it."""
    import time

    from rtdecode.config import load_rig_config
    from rtdecode.dashboard.feed import DashboardFeed
    from rtdecode.dashboard.server import DashboardServer

    cfg = load_rig_config(rig)
    daemon_host = "127.0.0.1" if cfg.outputs.bind_host in ("0.0.0.0", "::") else cfg.outputs.bind_host
    label_map = None
    if labels is not None:
        from rtdecode.scoring import read_labels

        label_map = {int(k): str(v) for k, v in read_labels(labels).items()}
    feed = DashboardFeed(
        f"tcp://{daemon_host}:{cfg.outputs.decision_port}",
        f"tcp://{daemon_host}:{cfg.outputs.control_port}",
        curve=_client_curve(cfg),
        labels=label_map,
    )
    server = DashboardServer(feed, host, port, allow_remote).start()
    console.print(f"dashboard of {rig} on {server.url} (Ctrl-C stops it)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------
@app.command()
def decode(
    recording: Annotated[Path, typer.Argument(help="Open Ephys recording folder (holding 'Record Node ...')")],
    bundle: Annotated[Path, typer.Option("--bundle", help="decoder bundle directory")],
    out: Annotated[Path, typer.Option("--out", help="decision log to write (JSON Lines, the daemon's format)")],
    rig: Annotated[
        Path | None,
        typer.Option("--rig", help="rig config TOML (sorting, trials, backend); default: the bundle's own facts"),
    ] = None,
    block_samples: Annotated[
        int | None,
        typer.Option(help="block size in samples (default: the real GUI's and the replayer's, 696 at 30 kHz)"),
    ] = None,
    seed: Annotated[int, typer.Option(help="unused with fixed blocks; kept for logs made with seeded sizes")] = 0,
) -> None:
    """Decode a recorded session offline through the same pipeline as the daemon; write its decision log."""
    from rtdecode.bundle import Bundle
    from rtdecode.config import load_rig_config
    from rtdecode.decode import decode_to_log
    from rtdecode.pipeline import OnlinePipeline, rig_config_for_bundle

    if block_samples is not None and block_samples <= 0:
        raise typer.BadParameter(f"--block-samples {block_samples}: expected a positive number of samples")
    if out.exists() and out.is_file() and out.stat().st_size:
        raise RtdecodeError(f"--out {out} exists and is not empty; the offline decoder writes a fresh log")
    b = Bundle.load(bundle, verify=True)
    cfg = load_rig_config(rig) if rig else rig_config_for_bundle(b)
    pipeline = OnlinePipeline(b, cfg, log=lambda m: err_console.print(m, highlight=False))
    pipeline.warmup()
    with progress_bar() as progress:
        task = progress.add_task(f"decoding {recording.name}", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        counts = decode_to_log(pipeline, recording, out, block_samples, seed, advance)
    console.print(
        f"{counts['onsets']} onsets, {counts['decisions']} decisions ({counts['ok']} ok, {counts['degraded']} "
        f"degraded); backend {pipeline.backend.device}; log {out}"
    )


def main() -> None:
    """Console-script entry point: user errors become one message and exit status 2."""
    try:
        app()
    except RtdecodeError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
