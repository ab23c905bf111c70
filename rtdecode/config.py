"""Rig configuration: pydantic models, loaded from TOML and validated at the edge.

A rig config says where the Open Ephys stream comes from (ZMQ Interface plugin ports, stream
name, channel count, sample rate), which probe is recorded, how spikes are sorted online, which
TTL line marks a stimulus onset, which inference backend to use, and where decisions go. The
preprocessing and the trial windows are the decoder bundle's, not the rig's: a rig config that
repeats them is refused. Every port is explicit: the GUI's plugins have colliding defaults
(ZMQ Interface 5556/5557, Event Broadcaster 5557, Network Events 5556).

Errors name the field, the value and what was expected, e.g.::

    rig_configs/x.toml: stream.data_port = 70000: Input should be less than or equal to 65535
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, field_validator, model_validator

from rtdecode.errors import ConfigError
from rtdecode.parameters import default, field
from rtdecode.stream import sources

Port = Annotated[int, Strict(), Field(ge=1024, le=65535, description="TCP port (1024-65535)")]

LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ::1."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreamConfig(_Strict):
    """The Open Ephys plugin (GUI 1.0: ZMQ Interface, or Falcon Output) this rig subscribes to."""

    protocol: str = Field(
        default_factory=lambda: sources.default().name,
        description="the plugin sending the stream, a registered stream source: "
        + "; ".join(f"{s.name}: {s.summary}" for s in map(sources.get, sources.names())),
    )
    host: str = Field("127.0.0.1", description="host running the GUI (or `rtdecode replay`)")
    data_port: Port = Field(description="the plugin's data (PUB) port; ZMQ Interface default 5556, Falcon Output 3335")
    heartbeat_port: Port | None = Field(
        None,
        description="ZMQ Interface heartbeat (REP) port; the plugin binds data_port + 1 (the default). "
        "Falcon Output has none",
    )
    stream_name: str = Field(
        min_length=1,
        description="the GUI stream to decode, e.g. ProbeA-AP: a stream of that name fits, and so does one "
        "that carries it behind a source-processor prefix, as the File Reader names a played-back recording "
        "(Neuropix-PXI-100.ProbeA-AP)",
    )
    channel_count: int = Field(strict=True, gt=0, le=4096, description="channels sent by the plugin")
    sample_rate: float = Field(strict=True, gt=0, le=1_000_000, description="stream sample rate in Hz")
    channel_numbers: list[Annotated[int, Strict(), Field(ge=0, le=65535)]] | None = Field(
        None,
        description="the channel_num of each channel the plugin sends, ascending (its channel mask); "
        "default 0 .. channel_count - 1",
    )
    heartbeat_interval_s: float = field("stream.heartbeat_interval_s", strict=True, gt=0, le=60)
    heartbeat_timeout_s: float = field("stream.heartbeat_timeout_s", strict=True, gt=0, le=600)
    silence_timeout_s: float = field("stream.silence_timeout_s", strict=True, gt=0, le=600)

    @model_validator(mode="after")
    def _channel_numbers_fit(self) -> StreamConfig:
        c = self.channel_numbers
        if c is not None and (len(c) != self.channel_count or any(b <= a for a, b in zip(c, c[1:], strict=False))):
            raise ValueError(
                f"channel_numbers must list channel_count = {self.channel_count} distinct ascending channel "
                f"numbers, got {len(c)}: {c[:8]}{'...' if len(c) > 8 else ''}"
            )
        return self

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, v: str) -> str:
        sources.get(v)  # ValueError naming the registered ones
        return v

    @property
    def source(self) -> sources.StreamSource:
        return sources.get(self.protocol)

    @model_validator(mode="after")
    def _heartbeat_is_next_port(self) -> StreamConfig:
        if not self.source.heartbeat:
            return self  # e.g. Falcon Output: nothing answers there
        if self.heartbeat_port is None:
            object.__setattr__(self, "heartbeat_port", self.data_port + 1)  # frozen: set once, here
        if self.heartbeat_port != self.data_port + 1:
            raise ValueError(
                f"heartbeat_port must be data_port + 1 = {self.data_port + 1} (the {self.protocol} "
                f"plugin binds its REP socket there), got {self.heartbeat_port}"
            )
        return self


class ProbeConfig(_Strict):
    """Probe geometry: a Neuropixels 1.0 built with probeinterface, or a probeinterface file."""

    model: Literal["neuropixels1", "probeinterface-file"] = "neuropixels1"
    file: Path | None = Field(None, description="probeinterface JSON, for model = probeinterface-file")

    @model_validator(mode="after")
    def _file_given(self) -> ProbeConfig:
        if self.model == "probeinterface-file" and self.file is None:
            raise ValueError("model = 'probeinterface-file' needs `file` (a probeinterface JSON)")
        return self


#: What the decoder bundle owns (its manifest's ``preprocessing`` and ``windows``): a rig config that
#: repeats one is refused, naming it, since the rig copy could only disagree.
OWNED_BY_THE_BUNDLE = {
    "sorting": ("highpass_hz", "filter_order", "common_reference"),
    "trials": ("response_window_ms", "baseline_window_ms"),
}


def _refuse_what_the_bundle_owns(section: str, data: Any) -> Any:
    if isinstance(data, dict):
        repeated = [k for k in OWNED_BY_THE_BUNDLE[section] if k in data]
        if repeated:
            raise ValueError(
                f"{', '.join(f'{section}.{k}' for k in repeated)}: the decoder bundle owns the preprocessing and the "
                "trial windows (its manifest; `rtdecode bundle info` shows them) and the rig follows it; remove "
                f"{'this key' if len(repeated) == 1 else 'these keys'} from the rig config"
            )
    return data


class SortingConfig(_Strict):
    """Online spike sorting against the bundle's templates (on the bundle's preprocessing)."""

    engine: Literal["rtdecode", "tdc-peeler", "nearest"] = field("sorting.engine")
    chunk_ms: float = field("sorting.chunk_ms", strict=True, gt=0, le=200)
    detect_threshold: float = field("sorting.detect_threshold", strict=True, gt=0, le=50)
    detection: Literal["pooled", "channel"] = field("sorting.detection")
    preprocess_threads: int = field("sorting.preprocess_threads", strict=True, ge=1, le=64)
    motion_tracking: bool = field("sorting.motion_tracking", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _not_the_bundles(cls, data: Any) -> Any:
        return _refuse_what_the_bundle_owns("sorting", data)


class TrialsConfig(_Strict):
    """Which TTL line marks a stimulus onset. The trial windows are the bundle's."""

    ttl_line: int = Field(strict=True, ge=0, le=255, description="0-based TTL line of stimulus onsets (as on the wire)")
    running_baseline: int = field("trials.running_baseline", strict=True, ge=0, le=100_000)

    @model_validator(mode="before")
    @classmethod
    def _not_the_bundles(cls, data: Any) -> Any:
        return _refuse_what_the_bundle_owns("trials", data)


class ModelConfig(_Strict):
    """Classifier backend."""

    backend: Literal["auto", "onnxruntime", "tensorrt", "torch-cuda", "torch"] = field("model.backend")
    intra_op_threads: int = field("model.intra_op_threads", strict=True, ge=1, le=64)
    precision: Literal["fp32", "fp16", "int8"] = field("model.precision")
    engine_cache_dir: Path | None = Field(None, description="TensorRT engine cache; default next to the bundle")


class NetworkEventsConfig(_Strict):
    """The GUI's Network Events plugin (REQ/REP, commands `TTL Line=N State=1/0`, 1-based lines)."""

    host: str = "127.0.0.1"
    port: Port
    ttl_line: int = Field(strict=True, ge=1, le=256, description="1-based line, as in Network Events commands")
    pulse_ms: float = field("outputs.network_events.pulse_ms", strict=True, gt=0, le=10_000)

    @model_validator(mode="after")
    def _pulse_outlasts_a_block(self) -> NetworkEventsConfig:
        block = default("gui.block_ms")
        if self.pulse_ms < block:
            raise ValueError(
                f"pulse_ms = {self.pulse_ms}: shorter than one GUI block ({block} ms), the GUI stamps ON and OFF "
                f"on the same sample; use at least {2 * block:.0f} ms"
            )
        return self


class OutputsConfig(_Strict):
    """Where decisions go."""

    bind_host: str = Field("127.0.0.1", description="address the daemon's own sockets bind to")
    allow_remote: bool = Field(False, strict=True, description="must be true to bind anything but loopback")
    decision_port: Port = Field(description="decision PUB socket")
    control_port: Port = Field(description="local REQ/REP control socket (status, stop)")
    decision_log_dir: Path = Field(Path("decisions"), description="JSON Lines decision logs, one per run")
    ttl_lines: dict[str, Annotated[int, Strict(), Field(ge=0, le=255)]] = Field(
        default_factory=lambda: {"natural": 1, "artificial": 2},
        description="0-based TTL line per class for the live rig plugin",
    )
    network_events: NetworkEventsConfig | None = None
    curve_server_key: Path | None = Field(
        None, description="the daemon's CURVE secret certificate (NAME.key_secret, from `rtdecode keys`)"
    )
    curve_authorized_clients: Path | None = Field(
        None, description="folder of the public certificates (*.key) of clients allowed to connect"
    )
    curve_client_key: Path | None = Field(
        None, description="this machine's client secret certificate, for `rtdecode status/stop/watch`"
    )

    @model_validator(mode="after")
    def _loopback_unless_allowed(self) -> OutputsConfig:
        if not is_loopback(self.bind_host) and not self.allow_remote:
            raise ValueError(
                f"bind_host = {self.bind_host!r} is not a loopback address; set allow_remote = true "
                "to expose the daemon's sockets beyond this machine"
            )
        if (self.curve_server_key is None) != (self.curve_authorized_clients is None):
            raise ValueError("CURVE needs both curve_server_key and curve_authorized_clients, or neither")
        if not is_loopback(self.bind_host) and self.curve_server_key is None:
            raise ValueError(
                f"bind_host = {self.bind_host!r} exposes the daemon beyond this machine, and nothing would "
                "authenticate its peers: set curve_server_key and curve_authorized_clients (ZeroMQ CURVE; "
                "make certificates with `rtdecode keys`)"
            )
        return self

    @property
    def curve(self) -> bool:
        return self.curve_server_key is not None


class RigConfig(_Strict):
    """A whole rig: stream in, probe, sorting, trials, model, outputs."""

    name: str = Field(min_length=1)
    stream: StreamConfig
    probe: ProbeConfig = ProbeConfig()
    sorting: SortingConfig = SortingConfig()
    trials: TrialsConfig
    model: ModelConfig = ModelConfig()
    outputs: OutputsConfig

    @model_validator(mode="after")
    def _ports_distinct(self) -> RigConfig:
        ports: dict[str, tuple[str, int]] = {
            "stream.data_port": (self.stream.host, self.stream.data_port),
            "stream.heartbeat_port": (self.stream.host, self.stream.heartbeat_port),
            "outputs.decision_port": (self.outputs.bind_host, self.outputs.decision_port),
            "outputs.control_port": (self.outputs.bind_host, self.outputs.control_port),
        }
        if self.outputs.network_events is not None:
            ne = self.outputs.network_events
            ports["outputs.network_events.port"] = (ne.host, ne.port)
        seen: dict[int, str] = {}
        for name, (host, port) in ports.items():
            if port in seen and _same_machine(host, ports[seen[port]][0]):
                raise ValueError(
                    f"{name} = {port} collides with {seen[port]} = {port}; every port must be distinct "
                    "(GUI plugin defaults collide: ZMQ Interface 5556/5557, Event Broadcaster 5557, "
                    "Network Events 5556)"
                )
            seen.setdefault(port, name)
        return self

    @model_validator(mode="after")
    def _feedback_is_not_the_onset_line(self) -> RigConfig:
        ne = self.outputs.network_events
        if ne is not None and ne.ttl_line - 1 == self.trials.ttl_line:
            raise ValueError(
                f"outputs.network_events.ttl_line = {ne.ttl_line} (1-based) is trials.ttl_line = "
                f"{self.trials.ttl_line} (0-based): the daemon's own feedback pulses would be taken as stimulus "
                "onsets; choose another feedback line"
            )
        return self


def _same_machine(a: str, b: str) -> bool:
    return a == b or (is_loopback(a) and is_loopback(b))


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: ``source: field.path = value: what was expected``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        value = e.get("input")
        shown = "(missing)" if e["type"] == "missing" else _short_repr(value)
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{source}: {loc} = {shown}: {msg}")
    return "\n".join(lines)


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_rig_config(data: dict[str, Any], source: str = "<config>") -> RigConfig:
    """Validate a parsed TOML/JSON mapping; raise :class:`ConfigError` naming every bad field."""
    try:
        return RigConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_rig_config(path: str | Path) -> RigConfig:
    """Read and validate a rig config TOML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such rig config file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text: {err}") from None
    return parse_rig_config(data, source=str(path))
