"""SpikeInterface's template-matching engines (``tdc-peeler``, ``nearest``) as online matchers.

Each SpikeInterface engine is a pipeline node whose ``compute(traces, start_frame, end_frame,
segment_index, max_margin)`` works on a plain numpy buffer with ``get_margin()`` samples of context
on each side (reference/sorting.md section 1): the node is built once from the bundle's templates
(a ``Templates`` object with the probe) and noise levels on a tiny in-memory recording that only
carries the geometry, then called per chunk. Its first call compiles numba code: the daemon warms
it up before going live.
"""

from __future__ import annotations

import numpy as np

from rtdecode.errors import RtdecodeError

ENGINES = {"tdc-peeler": "tdc-peeler", "nearest": "nearest"}
#: The matching nodes' constructor and ``compute`` signature are SpikeInterface internals; this
#: adapter is written and tested against these minor versions and refuses others with the reason.
SUPPORTED_SPIKEINTERFACE = ((0, 105),)


class EngineUnavailable(RtdecodeError):
    """A SpikeInterface engine cannot be used with the installed SpikeInterface."""


def check_spikeinterface_version(version: str) -> None:
    parts = version.split(".")
    try:
        minor = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        minor = None
    if minor not in SUPPORTED_SPIKEINTERFACE:
        tested = ", ".join(f"{a}.{b}.x" for a, b in SUPPORTED_SPIKEINTERFACE)
        raise EngineUnavailable(
            f"the SpikeInterface engines drive internal matching nodes tested with spikeinterface {tested}; "
            f'found {version}. Use [sorting] engine = "rtdecode", or install a tested version.'
        )


class SpikeInterfaceMatcher:
    def __init__(self, bundle, engine: str, detect_threshold: float, sample_rate: float) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
        import spikeinterface

        check_spikeinterface_version(spikeinterface.__version__)
        from probeinterface import Probe
        from spikeinterface.core import NumpyRecording, Templates
        from spikeinterface.core.sparsity import ChannelSparsity
        from spikeinterface.sortingcomponents.matching.method_list import matching_methods

        n_ch = bundle.templates.shape[2]
        probe = Probe(ndim=2, si_units="um")
        probe.set_contacts(
            positions=np.asarray(bundle.channel_positions, dtype=float), shapes="square", shape_params={"width": 12}
        )
        probe.set_device_channel_indices(np.arange(n_ch))
        rec = NumpyRecording([np.zeros((100, n_ch), dtype=np.float32)], sampling_frequency=sample_rate)
        rec.set_probe(probe)
        ids = np.asarray(bundle.unit_ids)
        sparsity = ChannelSparsity(np.asarray(bundle.sparsity, dtype=bool), ids, rec.channel_ids)
        templates = Templates(
            templates_array=np.asarray(bundle.templates, dtype=np.float32),
            sampling_frequency=sample_rate,
            nbefore=int(bundle.nbefore),
            is_in_uV=True,
            unit_ids=ids,
            channel_ids=rec.channel_ids,
            probe=probe,
        ).to_sparse(sparsity)
        cls = matching_methods[ENGINES[engine]]
        extra = {}
        if engine == "tdc-peeler":
            # Its matched-filtering fine detector divides by zero on short online chunks (SI 0.105.3).
            extra["use_fine_detector"] = False
        self.node = cls(
            rec,
            templates=templates,
            noise_levels=np.asarray(bundle.noise_levels, dtype=np.float32),
            detect_threshold=detect_threshold,
            **extra,
        )
        self.engine = engine
        self.unit_index = {u: i for i, u in enumerate(ids)}
        m = int(self.node.get_margin())
        self.margin_left = m
        self.margin_right = m

    def find(self, x: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        m = self.margin_left
        traces = x[start - m : stop + m]
        (spikes,) = self.node.compute(traces, 0, len(traces), 0, m)
        keep = (spikes["sample_index"] >= m) & (spikes["sample_index"] < len(traces) - m)
        spikes = spikes[keep]
        samples = spikes["sample_index"].astype(np.int64) + start - m
        units = spikes["cluster_index"].astype(np.int64)
        order = np.argsort(samples, kind="stable")
        return samples[order], units[order]
