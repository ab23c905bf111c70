"""The one table of the method's and the rig's tunable parameters: name, type, default, unit, help.

The rig config's defaults (``rtdecode/config.py``), the builder's and the benchmarks' defaults,
the CLI and the README's parameter table all read this table, so a default is written once.
``rtdecode config params`` prints it; a test holds the README's copy equal to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field


@dataclass(frozen=True)
class Parameter:
    name: str  # dotted: rig config section.key; "build." for the builder, "gui." for facts of the GUI
    type: str
    default: Any
    unit: str
    help: str


_TABLE = (
    Parameter("sorting.engine", "str", "rtdecode", "", "rtdecode (our matcher), tdc-peeler or nearest"),
    Parameter(
        "build.highpass_hz",
        "float",
        300.0,
        "Hz",
        "causal Butterworth high-pass corner (the bundle records it; the rig follows)",
    ),
    Parameter("build.filter_order", "int", 3, "", "Butterworth order (the bundle records it; the rig follows)"),
    Parameter("build.common_reference", "str", "median", "", "median, average or none, across channels (the bundle's)"),
    Parameter(
        "sorting.detect_threshold",
        "float",
        4.5,
        "noise SDs",
        "peak detection threshold, in noise SDs of the detection signal",
    ),
    Parameter(
        "sorting.detection",
        "str",
        "pooled",
        "",
        "rtdecode engine: pooled (a spike-shaped filter summed over nearby channels: finds small units) "
        "or channel (each channel on its own)",
    ),
    Parameter("sorting.preprocess_threads", "int", 1, "", "threads of the high-pass + reference (cores to spare)"),
    Parameter("sorting.chunk_ms", "float", 20.0, "ms", "sorting chunk length (SpikeInterface engines)"),
    Parameter(
        "sorting.motion_tracking",
        "bool",
        True,
        "",
        "estimate probe motion along the shank from the detected peaks and match against templates moved "
        "with it (rtdecode engine)",
    ),
    Parameter("trials.ttl_line", "int", 0, "", "0-based TTL line of stimulus onsets, as on the wire"),
    Parameter(
        "trials.running_baseline",
        "int",
        100,
        "trials",
        "N > 0: normalise responses by baseline statistics that follow the session's own baseline windows "
        "over ~N trials, from the calibration's (units lost, gained or changed since); 0: the bundle's as they are",
    ),
    Parameter(
        "build.response_window_ms", "[float, float]", (0.0, 250.0), "ms", "half-open response window (the bundle's)"
    ),
    Parameter(
        "build.baseline_window_ms", "[float, float]", (-200.0, 0.0), "ms", "half-open baseline window (the bundle's)"
    ),
    Parameter("build.min_baseline_std_hz", "float", 1.0, "Hz", "floor of the baseline std (zero-std guard)"),
    Parameter("model.backend", "str", "auto", "", "auto: TensorRT, else torch-cuda on a GPU, else ONNX Runtime"),
    Parameter("model.intra_op_threads", "int", 1, "", "ONNX Runtime / torch threads"),
    Parameter(
        "model.precision", "str", "fp32", "", "fp32; fp16 (TensorRT, torch-cuda); int8 (the bundle's INT8 model)"
    ),
    Parameter("build.image_size", "int", 224, "px", "neural image / network input side (the paper's 224)"),
    Parameter("stream.heartbeat_interval_s", "float", 2.0, "s", "heartbeat REQ period"),
    Parameter("stream.heartbeat_timeout_s", "float", 10.0, "s", "reconnect when no heartbeat reply"),
    Parameter(
        "outputs.network_events.pulse_ms",
        "float",
        50.0,
        "ms",
        "feedback TTL pulse length: over two GUI blocks, so ON and OFF never share a sample",
    ),
    Parameter(
        "stream.silence_timeout_s",
        "float",
        2.0,
        "s",
        "no data for this long: the upstream is declared silent and open trials are degraded",
    ),
    Parameter("gui.block_ms", "float", 1024 / 44.1, "ms", "the GUI's default block period (1024 samples at 44.1 kHz)"),
)

PARAMETERS: dict[str, Parameter] = {p.name: p for p in _TABLE}


def default(name: str) -> Any:
    """The default of parameter ``name`` (KeyError names the unknown parameter)."""
    return PARAMETERS[name].default


def field(name: str, **constraints: Any) -> Any:
    """A pydantic ``Field`` with the table's default and help (and the unit) for a rig-config key."""
    p = PARAMETERS[name]
    unit = f" [{p.unit}]" if p.unit else ""
    return Field(p.default, description=p.help + unit, **constraints)


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}" if value != int(value) else f"{value:.1f}"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def markdown_table() -> str:
    """The table as the README shows it."""
    lines = ["| parameter | type | default | unit | meaning |", "| --- | --- | --- | --- | --- |"]
    for p in PARAMETERS.values():
        lines.append(f"| `{p.name}` | {p.type} | `{_shown(p.default)}` | {p.unit} | {p.help} |")
    return "\n".join(lines)
