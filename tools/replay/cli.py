"""``rtdecode replay``, registered onto the ``rtdecode`` command line by :func:`register`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rtdecode.replay.replayer import PROTOCOLS

from rtdecode.console import err_console
from rtdecode.stream import sources


def register(app: typer.Typer) -> None:
    app.command()(replay)


def replay(
    recording: Annotated[Path, typer.Argument(help="Open Ephys recording folder (holding 'Record Node ...')")],
    port: Annotated[
        int | None,
        typer.Option(
            help="data port (default: the protocol's: "
            + ", ".join(f"{s.name} {s.default_data_port}" for s in map(sources.get, PROTOCOLS))
            + "; heartbeats on port + 1 where the protocol has them)"
        ),
    ] = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="the plugin to publish as: " + "; ".join(f"{s.name}: {s.summary}" for s in map(sources.get, PROTOCOLS))
        ),
    ] = PROTOCOLS[0],
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    speed: Annotated[str, typer.Option(help="1 = real time, N = N x real time, max = as fast as possible")] = "1",
    block_samples: Annotated[
        int | None, typer.Option(help="block size (default: the real GUI's, 696 samples at 30 kHz)")
    ] = None,
    variable_blocks: Annotated[
        bool, typer.Option(help="seeded block sizes within 15 % of the GUI's, instead of the GUI's fixed size")
    ] = False,
    origin: Annotated[
        str,
        typer.Option(
            help="sample numbers: recording (the recording's own, as a live acquisition) or zero (from 0, as the "
            "GUI's File Reader plays a recording)"
        ),
    ] = "recording",
    file_reader_names: Annotated[
        bool,
        typer.Option(
            help="name the stream as the GUI's File Reader does (the recording folder, e.g. "
            "Neuropix-PXI-100.ProbeA-AP); --no-file-reader-names sends the recorded stream name (ProbeA-AP)"
        ),
    ] = True,
    loop: Annotated[bool, typer.Option(help="start again at the end")] = False,
    fault: Annotated[list[str] | None, typer.Option("--fault", help="KIND=MESSAGE, e.g. drop=500 (repeatable)")] = None,
    wait_heartbeat: Annotated[float, typer.Option(help="wait up to this many s for a client's heartbeat")] = 0.0,
    channel_names: Annotated[
        bool, typer.Option(help="send content.channel_name (as current plugin builds always do)")
    ] = True,
    channels: Annotated[
        str | None, typer.Option(help="send only these channels, e.g. 0,2,4 (the plugin's channel mask)")
    ] = None,
    lossless: Annotated[
        bool,
        typer.Option(help="never drop (send high-water mark 0); default: the plugin's 1,000 messages, dropping beyond"),
    ] = False,
    preload: Annotated[
        bool, typer.Option(help="render every message into memory first, then only send (throughput benchmarks)")
    ] = False,
) -> None:
    """Re-publish a recording exactly as the Open Ephys GUI's ZMQ Interface (or Falcon Output) plugin does."""
    from rtdecode.replay.replayer import PLUGIN_SEND_HWM, Fault, Replayer

    if protocol not in PROTOCOLS:
        raise typer.BadParameter(f"--protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    source = sources.get(protocol)
    if port is None:
        port = source.default_data_port

    from rtdecode.config import is_loopback

    try:
        faults = [Fault.parse(f) for f in (fault or [])]
        rate = None if speed == "max" else float(speed)
        if rate is not None and not math.isfinite(rate):
            raise ValueError(f"--speed {speed!r}: expected 1, a positive number, or max")
        if rate is not None and rate <= 0:
            raise ValueError
    except ValueError as err:
        raise typer.BadParameter(str(err) or f"--speed {speed!r}: expected 1, a positive number, or max") from None
    if block_samples is not None and not 1 <= block_samples <= 1 << 16:
        raise typer.BadParameter(f"--block-samples {block_samples}: expected 1 to 65536 samples per block")
    if not is_loopback(host):
        err_console.print(f"note: binding {host}, reachable beyond this machine")
    if preload and faults:
        raise typer.BadParameter("--preload cannot inject faults (messages are rendered before sending)")
    try:
        mask = [int(c) for c in channels.split(",") if c.strip()] if channels else None
        r = Replayer(
            recording,
            port,
            host,
            rate,
            block_samples,
            loop,
            faults,
            wait_heartbeat,
            channel_names,
            preload=preload,
            channels=mask,
            send_hwm=0 if lossless else PLUGIN_SEND_HWM,
            protocol=protocol,
            origin=origin,
            file_reader_names=file_reader_names,
            variable_blocks=variable_blocks,
        )
    except ValueError as err:
        known = ("protocol", "stray", "origin")
        raise typer.BadParameter(
            str(err) if any(k in str(err) for k in known) else f"--channels {channels!r}: {err}"
        ) from None
    src = r.source
    err_console.print(
        f"replaying {recording} as stream {r.stream_name!r}: {src.n_channels} ch x {src.n_samples} samples at "
        f"{src.sample_rate:g} Hz, "
        f"{len(src.ttl_samples)} TTL events, on tcp://{host}:{port} "
        + f"as {protocol}"
        + (f" (heartbeat :{port + 1})" if source.heartbeat else "")
        + f", speed {speed}, "
        + ("lossless" if lossless else f"send high-water mark {PLUGIN_SEND_HWM} messages (drops beyond, as the plugin)")
    )
    import signal

    signal.signal(signal.SIGINT, lambda *_: r.stop())
    st = r.run()
    # Messages still queued go out before the process exits (the socket's linger: 30 s, lossless
    # 10 min, none after Ctrl-C); an interpreter exit would drop them.
    import zmq

    zmq.Context.instance().term()
    err_console.print(
        f"sent {st.messages_sent} messages, {st.blocks} blocks, {st.ttl_events} TTL events in "
        f"{st.wall_s:.1f} s ({st.samples / src.sample_rate / max(st.wall_s, 1e-9):.1f} x real time); "
        f"faults {st.faults_applied or 'none'}; heartbeats answered {st.heartbeats}"
    )
