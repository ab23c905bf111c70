"""The ground-truth session simulator (DESIGN section 7): animals in the real file formats.

``simulate(params, out_dir)`` writes one folder per animal::

    M0/
      animal.json                  manifest: files, parameters, seed, versions, sizes
      session_<id>.nwb             Allen Visual Coding Neuropixels layout (pynwb)
      stimuli/natural_scenes.npy   (118, H, W) uint8 dead-leaves scenes in the Allen frame
      stimuli/stimuli.json         frame geometry, grating grid, condition order
      stimulus_log.csv             one row per presentation: onset sample, family, frame /
                                   orientation / spatial frequency / phase, label
      recording/Record Node 101/experiment1/recording1/...   Open Ephys Binary, 30 kHz int16,
                                   TTL at every stimulus onset
      probe.json                   probeinterface geometry of the recorded channels
      ground_truth/spikes.npy      structured (sample_index, unit_index, amplitude)
      ground_truth/templates.npy   (units, samples, channels) float32 uV
      ground_truth/units.csv       unit ids, area, position, receptive-field parameters, SNR; whether
                                   the unit fires this session (present) and its rate factor
      ground_truth/motion.npz      with --drift: the true probe motion (times_s, displacement_um along
                                   the shank from session 1's position, unit_factor, rate_hz, spec)

Every animal sees the same 118 natural scenes (as in the Allen data) and has its own
population, receptive-field centre, running behaviour and noise. Deterministic for a seed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from rtdecode.offline.sim import natural_images, population
from rtdecode.offline.sim.drift import DriftSpec
from rtdecode.offline.sim.extracellular import spike_vector, unit_templates, voltage_recording
from rtdecode.offline.sim.nwb_writer import AllenSessionData, write_allen_session_nwb
from rtdecode.offline.sim.openephys_writer import NEUROPIXELS_AP_BIT_VOLTS, BinaryRecordingWriter
from rtdecode.offline.sim.probe import neuropixels1_probe

from rtdecode.core.stimuli import (
    BLANK_FRAME,
    N_NATURAL_SCENES,
    STATIC_GRATING_CONTRAST,
    STIMULUS_GRAY,
    AllenFrame,
    centred,
    render_static_gratings,
    static_grating_conditions,
)

PRESENTATION_S = 0.25
N_GRATING_CONDITIONS = 120
#: Condition indices into the stimulus stack: scenes, then gratings, then the gray blank.
GRAY_CONDITION = N_NATURAL_SCENES + N_GRATING_CONDITIONS


@dataclass
class SimulationParams:
    """Sizes and knobs of a simulated experiment. Tests use small sessions; benchmarks 384 ch."""

    animals: int = 1
    channels: int = 32
    units: int = 48
    repeats: int = 3
    seed: int = 0
    sample_rate: float = 30000.0
    frame_scale: float = 0.25  # stimulus frame relative to the 918 x 1174 Allen template
    write_recording: bool = True
    ttl_line: int = 0  # 0-based
    sessions: int = 1  # recording sessions per animal: the same units, templates and probe, new trials
    ttl_pulse_ms: float = 10.0
    lead_s: float = 5.0  # spontaneous gray period before the first block
    block_gap_s: float = 1.0  # gray between stimulus blocks
    invalid_intervals: int = 1  # intervals tagged 'stimulus' in invalid_times
    noise_uv: float = 7.0  # white noise per channel (rms)
    common_noise_uv: float = 2.5  # noise shared by every channel (removed by a common reference)
    non_visual_fraction: float = 0.15  # units placed outside VISp (deepest part of the shank)
    bad_unit_fraction: float = 0.12  # units whose quality metrics fail the Allen defaults
    chunk_s: float = 10.0
    drift: str = ""  # probe motion, a drift.DriftSpec text ("" = still); see drift.SPEC_HELP

    def validate(self) -> None:
        checks = {
            "animals": (self.animals >= 1, "at least 1"),
            "channels": (8 <= self.channels <= 384, "8 to 384 (one Neuropixels 1.0 bank)"),
            "units": (2 <= self.units <= 2000, "2 to 2000"),
            "repeats": (1 <= self.repeats <= 100, "1 to 100"),
            "sessions": (1 <= self.sessions <= 10, "1 to 10"),
            "frame_scale": (0 < self.frame_scale <= 1, "in (0, 1]"),
            "ttl_line": (0 <= self.ttl_line <= 255, "a 0-based line 0..255"),
            "sample_rate": (self.sample_rate >= 1000, "at least 1000 Hz"),
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                raise ValueError(f"simulate: {name} = {getattr(self, name)!r}: expected {expected}")
        DriftSpec.parse(self.drift)  # a ValueError naming the part that cannot be read


# --------------------------------------------------------------------------------------------
# Stimuli and schedule


def stimulus_stack(frame: AllenFrame, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """All 239 stimulus images in gray levels: 118 scenes, 120 gratings, gray.

    Returns the uint8 scenes and the float32 stack of all 239."""
    scenes = natural_images.natural_scene_stack(frame, N_NATURAL_SCENES, seed)
    cond = static_grating_conditions()
    gratings = render_static_gratings(frame, cond[:, 0], cond[:, 1], cond[:, 2], STATIC_GRATING_CONTRAST)
    gray = np.full((1, *frame.shape), STIMULUS_GRAY, dtype=np.float32)
    return scenes, np.concatenate([scenes.astype(np.float32), gratings, gray])


def make_schedule(rng: np.random.Generator, params: SimulationParams) -> pd.DataFrame:
    """Presentations of both families, back-to-back 250 ms, in alternating blocks.

    Natural scenes: 118 images x repeats plus one blank per repeat (frame -1). Static gratings:
    120 conditions x repeats plus a blank about every 25 gratings. The experiment starts with a
    spontaneous gray period and has gray gaps between blocks."""
    cond = static_grating_conditions()
    ns = np.concatenate([np.repeat(np.arange(N_NATURAL_SCENES), params.repeats), np.full(params.repeats, BLANK_FRAME)])
    rng.shuffle(ns)
    n_sg_blank = max(1, round(N_GRATING_CONDITIONS * params.repeats / 25))
    sg = np.concatenate([np.repeat(np.arange(N_GRATING_CONDITIONS), params.repeats), np.full(n_sg_blank, -1)])
    rng.shuffle(sg)
    n_blocks = 2 if params.repeats >= 2 else 1
    rows = []
    t = params.lead_s
    spont = [(0.0, params.lead_s)]
    block = 0
    for ns_part, sg_part in zip(np.array_split(ns, n_blocks), np.array_split(sg, n_blocks), strict=True):
        for family, part in (("natural_scenes", ns_part), ("static_gratings", sg_part)):
            for k, c in enumerate(part):
                start = t + k * PRESENTATION_S
                if family == "natural_scenes":
                    blank = c == BLANK_FRAME
                    rows.append(
                        dict(
                            family=family,
                            frame=float(c),
                            orientation=np.nan,
                            spatial_frequency=np.nan,
                            phase=np.nan,
                            contrast=np.nan,
                            condition=GRAY_CONDITION if blank else int(c),
                            label="blank" if blank else "natural",
                            start_time=start,
                            stimulus_block=block,
                        )
                    )
                else:
                    blank = c < 0
                    o, s, p = (np.nan, np.nan, np.nan) if blank else cond[c]
                    rows.append(
                        dict(
                            family=family,
                            frame=np.nan,
                            orientation=o,
                            spatial_frequency=s,
                            phase=p,
                            contrast=STATIC_GRATING_CONTRAST,
                            condition=GRAY_CONDITION if blank else N_NATURAL_SCENES + int(c),
                            label="blank" if blank else "artificial",
                            start_time=start,
                            stimulus_block=block,
                        )
                    )
            t += len(part) * PRESENTATION_S
            block += 1
        spont.append((t, t + params.block_gap_s))
        t += params.block_gap_s
    df = pd.DataFrame(rows)
    df["stop_time"] = df.start_time + PRESENTATION_S
    df.attrs["spontaneous"] = spont
    df.attrs["duration_s"] = t + 1.0
    return df


# --------------------------------------------------------------------------------------------
# One animal


def _unit_layout(rng: np.random.Generator, probe, n_units: int, non_visual_fraction: float):
    """Unit positions (x, y, z um) near the shank, and which channels lie outside VISp."""
    pos = probe.contact_positions
    y_min, y_max = pos[:, 1].min(), pos[:, 1].max()
    n_ca1_rows = y_min + non_visual_fraction * (y_max - y_min)
    channel_area = np.where(pos[:, 1] < n_ca1_rows, "CA1", "VISp")
    xs = rng.uniform(pos[:, 0].min() - 12, pos[:, 0].max() + 12, n_units)
    ys = rng.uniform(y_min - 10, y_max + 10, n_units)
    zs = rng.uniform(15, 50, n_units)
    return np.stack([xs, ys, zs], axis=1), channel_area


def simulate_animal(
    params: SimulationParams,
    index: int,
    out_dir: Path,
    scenes: np.ndarray,
    stack: np.ndarray,
    frame: AllenFrame,
    progress=None,
    session: int = 1,
) -> Path:
    """Simulate session ``session`` of animal ``index`` into ``out_dir / f"M{index}"`` (session 1) or
    ``out_dir / f"M{index}-s{session}"``; returns that folder.

    Every session of an animal has the same probe, units, templates, receptive fields and tuning (the
    animal-level draws come first from the animal's own random stream); a later session has its own
    schedule, trial-to-trial gains, spikes, noise and recording (from a stream of its own), as a
    new day's recording of the same chronically implanted neurons would."""
    name = f"M{index}" if session == 1 else f"M{index}-s{session}"
    adir = out_dir / name
    if adir.exists():
        shutil.rmtree(adir)
    (adir / "stimuli").mkdir(parents=True)
    (adir / "ground_truth").mkdir()
    rng = np.random.default_rng(np.random.SeedSequence([params.seed, index, 0xA1]))
    fs = params.sample_rate
    session_id = 700_000_000 + params.seed * 1000 + index + 100_000 * (session - 1)  # unit ids: % 1000
    first_sample = 30_000 * 3 + int(rng.integers(0, 30_000))

    # Probe, units, templates
    probe = neuropixels1_probe(params.channels)
    unit_pos, channel_area = _unit_layout(rng, probe, params.units, params.non_visual_fraction)
    templates, nbefore = unit_templates(probe.contact_positions, unit_pos, fs, int(rng.integers(2**31)))
    peak_channel = np.abs(templates).max(axis=1).argmax(axis=1)
    unit_area = channel_area[peak_channel]

    # Population and spikes
    schedule = make_schedule(rng, params)
    rf_centre = (float(rng.uniform(-25, 25)), float(rng.uniform(-10, 15)))
    pop = population.make_population(rng, params.units, unit_area != "VISp", rf_centre)
    cond_rates = population.condition_rates(pop, frame, centred(stack))
    if session > 1:  # the animal is drawn; from here on, this session's own stream
        rng = np.random.default_rng(np.random.SeedSequence([params.seed, index, 0xA1, session]))
        schedule = make_schedule(rng, params)
        first_sample = 30_000 * 3 + int(rng.integers(0, 30_000))
    duration = float(schedule.attrs["duration_s"])
    n_trials = len(schedule)
    drift = DriftSpec.parse(params.drift)
    rate_factor = drift.unit_rates(params.units, session, [params.seed, index])  # 0: silent this session
    present = rate_factor > 0
    trial_gain = rng.gamma(5.0, 1 / 5.0, (params.units, n_trials)) * rng.gamma(20.0, 1 / 20.0, (1, n_trials))
    trial_rates = cond_rates[:, schedule.condition.to_numpy()] * trial_gain * rate_factor[:, None]
    run_t, run_speed = population.running_speed_trace(rng, duration)
    trains = population.generate_spike_trains(
        rng,
        replace(pop, baseline_hz=pop.baseline_hz * rate_factor),
        schedule.start_time.to_numpy(),
        trial_rates,
        duration,
        PRESENTATION_S,
        run_t,
        run_speed,
    )
    n_samples = int(round(duration * fs))
    margin = templates.shape[1]
    samples = [np.round(st * fs).astype(np.int64) for st in trains]
    keep = [(s >= margin) & (s < n_samples - margin) for s in samples]
    samples = [s[k] for s, k in zip(samples, keep, strict=True)]
    trains = [s / fs for s in samples]
    amp_factor = [rng.normal(1.0, 0.07, len(s)).clip(0.7, 1.3) for s in samples]

    # Noise levels and metrics
    noise_levels = params.noise_uv * rng.uniform(0.85, 1.15, params.channels)
    peak_amp = np.abs(templates).max(axis=(1, 2))
    snr = peak_amp / noise_levels[peak_channel]

    # Recording
    spike_vec = spike_vector(samples, amp_factor)
    motion = None if drift.still else drift.motion(n_samples / fs, session, unit_pos[:, 1])
    if motion is not None:
        motion.save(adir / "ground_truth" / "motion.npz", params.drift)
    if params.write_recording:
        noise_seed = int(rng.integers(2**31))
        rec = voltage_recording(spike_vec, templates, nbefore, noise_levels, n_samples, fs, noise_seed, motion, probe)
        offsets = rng.normal(0, 25.0, params.channels)
        cm_key = [params.seed, index, 0xC0] + ([session] if session > 1 else [])
        cm_rng = np.random.default_rng(np.random.SeedSequence(cm_key))
        writer = BinaryRecordingWriter(
            adir / "recording",
            fs,
            params.channels,
            first_sample_number=first_sample,
            stream_name="ProbeA-AP",
            bit_volts=NEUROPIXELS_AP_BIT_VOLTS,
            channel_names=[f"CH{i + 1}" for i in range(params.channels)],
        )
        chunk = int(params.chunk_s * fs)
        task = progress.add_task(f"{name}: recording", total=n_samples) if progress else None
        for s0 in range(0, n_samples, chunk):
            s1 = min(n_samples, s0 + chunk)
            block = rec.get_traces(start_frame=s0, end_frame=s1)
            block += offsets[None, :] + cm_rng.normal(0, params.common_noise_uv, (s1 - s0, 1))
            writer.append(block)
            if progress:
                progress.update(task, advance=s1 - s0)
        onset_samples = first_sample + np.round(schedule.start_time.to_numpy() * fs).astype(np.int64)
        pulse = int(round(params.ttl_pulse_ms * fs / 1000))
        writer.add_ttl(
            np.concatenate([onset_samples, onset_samples + pulse]),
            params.ttl_line,
            np.concatenate([np.ones(n_trials), np.zeros(n_trials)]),
        )
        writer.close()

    # Stimulus log
    t0 = first_sample / fs
    log = schedule.drop(columns=["condition"]).copy()
    log.insert(0, "trial", np.arange(n_trials))
    log.insert(1, "onset_sample", first_sample + np.round(schedule.start_time.to_numpy() * fs).astype(np.int64))
    log["start_time"] = log.start_time + t0
    log["stop_time"] = log.stop_time + t0
    log.to_csv(adir / "stimulus_log.csv", index=False)

    # Stimuli
    scenes_path = adir / "stimuli" / "natural_scenes.npy"
    shared = out_dir / ".stimuli_cache" / "natural_scenes.npy"
    _link_or_copy(shared, scenes_path)
    (adir / "stimuli" / "stimuli.json").write_text(json.dumps(stimuli_description(frame), indent=2))

    # Ground truth
    np.save(adir / "ground_truth" / "spikes.npy", spike_vec)
    np.save(adir / "ground_truth" / "templates.npy", templates)
    unit_ids = 950_000_000 + session_id % 1000 * 10_000 + np.arange(params.units)
    gt_units = pd.DataFrame(pop.as_records())
    gt_units.insert(0, "unit_id", unit_ids)
    gt_units.insert(1, "unit_index", np.arange(params.units))
    gt_units.insert(2, "area", unit_area)
    gt_units["x_um"], gt_units["y_um"], gt_units["z_um"] = unit_pos.T
    gt_units["peak_channel_index"] = peak_channel
    gt_units["peak_amplitude_uv"] = peak_amp
    gt_units["snr"] = snr
    gt_units["n_spikes"] = [len(s) for s in samples]
    gt_units["present"] = present  # False: silent this session (drift lost=/gained=)
    gt_units["rate_factor"] = rate_factor  # this session's firing rates against session 1's
    gt_units["template_nbefore"] = nbefore
    gt_units.to_csv(adir / "ground_truth" / "units.csv", index=False)
    from probeinterface import write_probeinterface

    write_probeinterface(adir / "probe.json", probe)

    # NWB
    nwb_name = f"session_{session_id}.nwb"
    channel_ids = 850_000_000 + session_id % 1000 * 1000 + np.arange(params.channels)
    electrodes = pd.DataFrame(
        {
            "id": channel_ids,
            "location": channel_area,
            "probe_vertical_position": probe.contact_positions[:, 1].astype(int),
            "probe_horizontal_position": probe.contact_positions[:, 0].astype(int),
            "local_index": np.arange(params.channels),
            "valid_data": True,
        }
    )
    units_df = _unit_metrics(
        rng,
        params,
        unit_ids,
        channel_ids[peak_channel],
        peak_channel,
        trains,
        duration,
        snr,
        peak_amp,
        templates,
        fs,
    )
    invalid = _invalid_times(rng, schedule, params.invalid_intervals, t0)
    ns = schedule[schedule.family == "natural_scenes"]
    sg = schedule[schedule.family == "static_gratings"]
    spont = pd.DataFrame(schedule.attrs["spontaneous"], columns=["start_time", "stop_time"])
    spont["stimulus_block"] = -1.0
    data = AllenSessionData(
        session_id=session_id,
        start_time=dt.datetime(2019, 1, 19, 8, 54, 18, tzinfo=dt.timezone(dt.timedelta(hours=-8))),
        probe_name="probeA",
        sampling_rate=fs,
        electrodes=electrodes,
        units=units_df[present].reset_index(drop=True),  # a sorter finds only the units that fire
        spike_times=[trains[u] + t0 for u in np.flatnonzero(present)],
        spike_amplitudes=[peak_amp[u] * amp_factor[u] * 1e-6 for u in np.flatnonzero(present)],
        natural_scenes=_shift(ns[["start_time", "stop_time", "frame", "stimulus_block"]], t0),
        static_gratings=_shift(
            sg[
                [
                    "start_time",
                    "stop_time",
                    "orientation",
                    "spatial_frequency",
                    "phase",
                    "contrast",
                    "stimulus_block",
                ]
            ],
            t0,
        ),
        spontaneous=_shift(spont, t0),
        invalid_times=invalid,
        running_t=run_t + t0,
        running_speed=run_speed,
    )
    write_allen_session_nwb(adir / nwb_name, data)

    manifest = {
        "name": name,
        "animal": f"M{index}",
        "session": session,
        "session_id": session_id,
        "created_by": "rtdecode simulate",
        "nwb": nwb_name,
        "recording": "recording" if params.write_recording else None,
        "stimulus_log": "stimulus_log.csv",
        "stimuli": "stimuli",
        "probe": "probe.json",
        "ground_truth": "ground_truth",
        "sample_rate": fs,
        "first_sample_number": first_sample,
        "n_samples": n_samples,
        "duration_s": duration,
        "channels": params.channels,
        "units": params.units,
        "n_trials": n_trials,
        "ttl_line": params.ttl_line,
        "stream_name": "ProbeA-AP",
        "rf_centre_deg": list(rf_centre),
        "motion": "ground_truth/motion.npz" if motion is not None else None,
        "params": asdict(params),
        "versions": _versions(),
    }
    (adir / "animal.json").write_text(json.dumps(manifest, indent=2))
    return adir


def _shift(df: pd.DataFrame, t0: float) -> pd.DataFrame:
    out = df.copy()
    out["start_time"] = out.start_time + t0
    out["stop_time"] = out.stop_time + t0
    return out.reset_index(drop=True)


def _unit_metrics(
    rng, params, unit_ids, peak_channel_ids, peak_channel, trains, duration, snr, peak_amp, templates, fs
) -> pd.DataFrame:
    """Allen-style quality metrics; a fraction of units is made to fail the default filters."""
    n = params.units
    isi_viol = np.array([_isi_violations(st, duration) for st in trains])
    bad = rng.random(n) < params.bad_unit_fraction
    noise_label = bad & (rng.random(n) < 0.4)
    amplitude_cutoff = np.where(bad & ~noise_label, rng.uniform(0.15, 0.45, n), rng.uniform(0.0, 0.08, n))
    main = templates[np.arange(n), :, peak_channel]  # waveform on the peak channel
    trough = main.argmin(axis=1)
    after_peak = np.array([trough[u] + main[u, trough[u] :].argmax() for u in range(n)])
    trough_to_peak = after_peak - trough
    return pd.DataFrame(
        {
            "id": unit_ids,
            "peak_channel_id": peak_channel_ids,
            "local_index": np.arange(n),
            "quality": np.where(noise_label, "noise", "good"),
            "firing_rate": [len(st) / duration for st in trains],
            "isi_violations": isi_viol,
            "presence_ratio": rng.uniform(0.96, 1.0, n),
            "amplitude_cutoff": amplitude_cutoff,
            "snr": snr,
            "amplitude": peak_amp,
            "waveform_duration": np.abs(trough_to_peak) / fs * 1000,
        }
    )


def _isi_violations(st: np.ndarray, duration: float, isi_threshold: float = 0.0015, min_isi: float = 0.0) -> float:
    """Hill et al. ISI violation ratio (AllenSDK ``isi_violations``)."""
    if st.size < 2:
        return 0.0
    n_viol = np.sum(np.diff(st) < isi_threshold)
    violation_time = 2 * st.size * (isi_threshold - min_isi)
    rate = st.size / duration
    return float(n_viol / violation_time / rate)


def _invalid_times(rng, schedule: pd.DataFrame, n: int, t0: float) -> pd.DataFrame:
    """``n`` short intervals tagged 'stimulus' inside natural-scene blocks (real files have a few)."""
    rows = []
    ns = schedule[schedule.family == "natural_scenes"]
    for _ in range(n):
        k = int(rng.integers(len(ns) // 4, max(len(ns) // 4 + 1, 3 * len(ns) // 4)))
        start = float(ns.start_time.iloc[k]) + 0.1
        rows.append({"start_time": start + t0, "stop_time": start + 0.6 + t0, "tags": ["stimulus"]})
    return pd.DataFrame(rows, columns=["start_time", "stop_time", "tags"])


def stimuli_description(frame: AllenFrame) -> dict:
    cond = static_grating_conditions()
    return {
        "frame": {
            "height": frame.height,
            "width": frame.width,
            "px_per_deg": frame.px_per_deg,
            "allen_template_shape": [918, 1174],
            "gray": STIMULUS_GRAY,
        },
        "natural_scenes": {
            "file": "natural_scenes.npy",
            "count": N_NATURAL_SCENES,
            "blank_frame": BLANK_FRAME,
            "generator": "dead leaves (offline/natural_images.py)",
        },
        "static_gratings": {
            "orientation_deg": sorted(set(cond[:, 0].tolist())),
            "spatial_frequency_cpd": sorted(set(cond[:, 1].tolist())),
            "phase_cycles": sorted(set(cond[:, 2].tolist())),
            "contrast": STATIC_GRATING_CONTRAST,
            "renderer": "rtdecode.core.stimuli.render_static_gratings",
        },
        "presentation_s": PRESENTATION_S,
    }


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("rtdecode", "numpy", "spikeinterface", "probeinterface", "pynwb"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def simulate(params: SimulationParams, out_dir: str | Path, progress=None) -> list[Path]:
    """Simulate ``params.animals`` animals into ``out_dir``; returns their first sessions' folders
    (later sessions, ``params.sessions > 1``, are written beside them as ``M{i}-s{k}``)."""
    params.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = AllenFrame.scaled(params.frame_scale)
    task = progress.add_task("stimuli: 118 scenes + 120 gratings", total=1) if progress else None
    scenes, stack = stimulus_stack(frame, params.seed)
    cache = out_dir / ".stimuli_cache"
    cache.mkdir(exist_ok=True)
    np.save(cache / "natural_scenes.npy", scenes)
    if progress:
        progress.update(task, advance=1)
    folders = []
    animals_task = progress.add_task("animals", total=params.animals * params.sessions) if progress else None
    for a in range(params.animals):
        for k in range(1, params.sessions + 1):
            folder = simulate_animal(params, a, out_dir, scenes, stack, frame, progress, session=k)
            if k == 1:
                folders.append(folder)
            if progress:
                progress.update(animals_task, advance=1)
    shutil.rmtree(cache)
    return folders
