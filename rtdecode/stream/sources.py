"""The input protocols rtdecode subscribes to, as a registry: one :class:`StreamSource` each.

A source says what its upstream is like (whether it answers heartbeats on ``data_port + 1``,
whether it sends a channel mask under the channels' own numbers, its default data port) and makes
the :class:`StreamReader` the receiver process runs: frames off the SUB socket -> a message ->
blocks, TTL events, continuity anomalies and the stream-fit verdict. Everything else -- the stray
gate, the shared-memory ring, the pipeline, the gap ledger, the decision log -- is the same for
every source. The built-in sources are :mod:`rtdecode.stream.zmq_interface_source` and
:mod:`rtdecode.stream.falcon_output_source`; the protocol names are written there and nowhere
else in the library.

A new input (the GUI's Ephys Socket, LSL, an ONIX source) is one module that builds a reader and
calls :func:`register`. The receiver runs in its own process: it imports the module a source was
registered from (``StreamSource.module``) before looking the source up, so a source registered by
any importable module -- a test's, a lab's -- works end to end with no other module edited.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from rtdecode.stream.assembler import Block
from rtdecode.stream.continuity import Anomaly
from rtdecode.stream.fit import StreamFit
from rtdecode.stream.items import TtlItem

#: The modules of the built-in sources, imported on first use of the registry.
BUILTIN_MODULES = ("rtdecode.stream.zmq_interface_source", "rtdecode.stream.falcon_output_source")


@dataclass(slots=True)
class Assembled:
    """What one message gave: a complete block (or None), TTL events, anomalies, and the stream-fit
    verdict when it changed (``"fit"``/``"unfit"``, else None)."""

    block: Block | None = None
    ttls: list[TtlItem] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    verdict: str | None = None


class StreamReader(Protocol):
    """One subscription's protocol state, in the receiver process.

    ``assembler`` is what :class:`~rtdecode.stream.gate.StrayGate` judges continuity by (``is_ours``,
    ``last_message_num``, ``current_sample``, ``expected_sample``, ``skipping_sample``,
    ``fits_block``) and where the stream's ``counters`` and ``streams_seen`` are kept; messages carry
    ``message_num``, ``sample_num`` and ``num_samples``."""

    assembler: Any
    copy_frames: bool  # False: frames are handed over as buffers, read in place (large messages)

    def parse(self, frames: list) -> Any | None:
        """A message, or None for a valid message this reader does not use; raises
        :class:`~rtdecode.stream.protocol.ProtocolError` naming what is wrong."""

    def assemble(self, msg: Any, now_ns: int, fit: StreamFit) -> Assembled:
        """Account one message the gate let through."""


@dataclass(frozen=True)
class StreamSource:
    name: str  # the rig config's ``[stream] protocol``
    summary: str  # one line for ``--help`` and the config schema
    reader: Callable[..., StreamReader]  # (ReceiverSpec) -> reader
    default_data_port: int
    heartbeat: bool = False  # the upstream answers heartbeats on a REP socket at data_port + 1
    channel_mask: bool = False  # it may send a subset of channels under their own numbers
    module: str = ""  # where it was registered from (filled in by register)


_REGISTRY: dict[str, StreamSource] = {}
_builtins_loaded = False


def register(source: StreamSource, module: str | None = None) -> StreamSource:
    """Add ``source`` (``module``: the importable module that registers it; default the module its
    reader is defined in). A name registered twice must be the same source."""
    module = module or source.module or source.reader.__module__
    source = replace(source, module=module)
    old = _REGISTRY.get(source.name)
    if old is not None and old != source:
        raise ValueError(f"stream source {source.name!r} is already registered (from {old.module})")
    _REGISTRY[source.name] = source
    return source


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for m in BUILTIN_MODULES:
            importlib.import_module(m)


def names() -> list[str]:
    """The registered source names: the built-ins in :data:`BUILTIN_MODULES` order (whatever order
    they were imported in), then the others as registered."""
    _load_builtins()
    rank = {m: i for i, m in enumerate(BUILTIN_MODULES)}
    return sorted(_REGISTRY, key=lambda n: rank.get(_REGISTRY[n].module, len(rank)))


def get(name: str, module: str | None = None) -> StreamSource:
    """The source called ``name`` (importing ``module`` first, when given: how the receiver process
    finds a source registered outside the library). Raises ``ValueError`` naming the known ones."""
    _load_builtins()
    if name not in _REGISTRY and module:
        importlib.import_module(module)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown stream protocol {name!r}; known: {', '.join(map(repr, names()))}") from None


def default() -> StreamSource:
    """The source a rig config gets when it names none (the first built-in)."""
    return get(names()[0])
