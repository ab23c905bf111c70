"""The evaluation report: ``report.json``, PNG figures and ``report.md`` with a short reading.

Figures follow the seed paper: per-animal accuracy (Fig. 6a), across-animal combinations
(Fig. 6b), PCA and t-SNE of neural images (Fig. 7), example preferred stimuli and neural images
beside their stimuli (Figs. 3 and 5), plus training curves.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MODEL_LABELS = {
    "googlenet": "GoogLeNet (neural image)",
    "googlenet_random": "GoogLeNet, random init",
    "efficientnet_lite0": "EfficientNet-Lite0 (neural image)",
    "efficientnet_lite0_random": "EfficientNet-Lite0, random init",
    "linear_image": "linear on image",
    "linear_image_pca": "linear on image PCs",
    "glm": "GLM on R",
    "temporal": "temporal spike image",
    "shuffled_labels": "control: shuffled labels",
    "stimulus_only": "control: stimulus only",
}
COLOURS = {
    "googlenet": "#1f77b4",
    "googlenet_random": "#aec7e8",
    "efficientnet_lite0": "#d62728",
    "efficientnet_lite0_random": "#ff9896",
    "linear_image": "#17becf",
    "linear_image_pca": "#9467bd",
    "glm": "#ff7f0e",
    "temporal": "#2ca02c",
    "shuffled_labels": "#7f7f7f",
    "stimulus_only": "#bcbd22",
}


def label(model: str) -> str:
    return MODEL_LABELS.get(model, model)


def _bars(ax, groups: list[str], entries: list[dict], models: list[str], paper_lines: dict[str, float]) -> None:
    width = 0.8 / len(models)
    x = np.arange(len(groups))
    for k, m in enumerate(models):
        acc = np.array([e[m]["accuracy"] if m in e else np.nan for e in entries])
        lo = np.array([e[m]["ci95"][0] if m in e else np.nan for e in entries])
        hi = np.array([e[m]["ci95"][1] if m in e else np.nan for e in entries])
        ax.bar(
            x + (k - (len(models) - 1) / 2) * width,
            acc,
            width,
            yerr=[acc - lo, hi - acc],
            capsize=2,
            label=label(m),
            color=COLOURS.get(m),
        )
    ax.axhline(0.5, color="k", lw=0.8, ls=":", label="chance")
    for name, val in paper_lines.items():
        ax.axhline(val, color="r", lw=0.8, ls="--")
        ax.text(len(groups) - 0.5, val, f" paper {name} {val:.0%}", color="r", fontsize=7, va="bottom", ha="right")
    ax.set_xticks(x, groups, rotation=30 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy (95 % CI)")
    ax.legend(fontsize=7, loc="lower left")


def figure_within(report: dict, path: Path) -> None:
    w = report["within_animal"]
    fig, ax = plt.subplots(figsize=(max(5, 1.8 * len(w) + 2), 4))
    _bars(
        ax,
        [e["animal"] for e in w],
        [e["scores"] for e in w],
        list(w[0]["scores"]),
        {"within": report["paper"]["within_animal_mean"], "GLM": report["paper"]["glm_baseline"]},
    )
    ax.set_title("Within-animal decoding, natural vs. artificial (cf. paper Fig. 6a)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_across(report: dict, path: Path) -> None:
    a = report["across_animal"]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(a) + 2), 4))
    labels = [f"[{','.join(e['train'])}]→{e['target']}" for e in a]
    _bars(
        ax,
        labels,
        [e["scores"] for e in a],
        list(a[0]["scores"]),
        {
            "best": report["paper"]["across_best"]["accuracy"],
            "worst": report["paper"]["across_worst"]["accuracy"],
        },
    )
    ax.set_title("Across-animal decoding: train → target (cf. paper Fig. 6b)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_embedding(images: np.ndarray, labels: np.ndarray, animal: str, path: Path, seed: int = 0) -> None:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = images - images.mean(0)
    pca = PCA(n_components=2, random_state=seed).fit(x)
    p = pca.transform(x)
    perplexity = float(min(30, max(5, (len(x) - 1) / 4)))
    t = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(
        PCA(n_components=min(50, len(x) - 1, x.shape[1]), random_state=seed).fit_transform(x)
    )
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, z, title in (
        (axes[0], p, f"PCA ({pca.explained_variance_ratio_[:2].sum():.0%} variance)"),
        (axes[1], t, "t-SNE"),
    ):
        for cls, name, c in ((1, "natural", "#2ca02c"), (0, "artificial", "#d62728")):
            ax.scatter(z[labels == cls, 0], z[labels == cls, 1], s=8, alpha=0.7, c=c, label=name)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Neural images of held-out trials, {animal} fold 0 (cf. paper Fig. 7)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_examples(ds, split, path: Path, n: int = 4) -> None:
    """Top preferred stimuli, and natural/grating stimuli beside their neural images."""
    size = ds.stack.shape[-1]
    ps = split.ps.reshape(-1, size, size)
    top = np.argsort(-ps.reshape(len(ps), -1).std(1))[:n]
    test = split.test.trials
    nat = test[ds.labels[test] == 1][: n // 2]
    art = test[ds.labels[test] == 0][: n - n // 2]
    chosen = np.concatenate([nat, art])
    pos = {int(t): i for i, t in enumerate(test)}
    fig, axes = plt.subplots(3, n, figsize=(2.2 * n, 6.6))
    for j, u in enumerate(top):
        v = np.abs(ps[u]).max()
        axes[0, j].imshow(ps[u], cmap="RdBu_r", vmin=-v, vmax=v)
        axes[0, j].set_title(f"PS unit {ds.unit_ids[u]}", fontsize=7)
    for j, t in enumerate(chosen):
        axes[1, j].imshow(ds.stack[ds.condition[t]], cmap="gray", vmin=-1, vmax=1)
        axes[1, j].set_title(f"stimulus ({'natural' if ds.labels[t] else 'grating'})", fontsize=7)
        img = split.test.images[pos[int(t)]].reshape(size, size)
        v = np.abs(img).max() or 1
        axes[2, j].imshow(img, cmap="RdBu_r", vmin=-v, vmax=v)
        axes[2, j].set_title(f"neural image, trial {t}", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"{ds.name}: preferred stimuli (top), stimuli and their neural images (cf. paper Figs. 3, 5)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_curves(report: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for w in report["within_animal"]:
        for c in w["training_curves"]:
            lbl = f"{w['animal']} fold {c['fold']}"
            axes[0].plot(c["epoch"], c["loss"], lw=1, label=lbl)
            axes[1].plot(c["epoch"], c["train_accuracy"], lw=1, label=lbl)
    axes[0].set_ylabel("training loss")
    axes[1].set_ylabel("training accuracy")
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[1].legend(fontsize=6, ncol=2)
    fig.suptitle(f"{label(report.get('primary_network', 'googlenet'))} training curves (within-animal folds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_learning_curve(report: dict, path: Path) -> None:
    """Accuracy (with 95 % intervals) against the target's calibration trials, random subsets (solid)
    and the first minutes in recording order (dashed, against minutes)."""
    rows = [r for r in report["learning_curve"] if r["accuracy"] is not None]
    settings = [s for s in ("within", "across") if any(r["setting"] == s for r in rows)]
    if not settings:
        return
    fig, axes = plt.subplots(2, len(settings), figsize=(4.8 * len(settings), 7), squeeze=False)
    for col, setting in enumerate(settings):
        for row, (kind, xkey, xlabel) in enumerate(
            (
                ("random", "calibration_trials", "calibration trials (random subsets)"),
                ("first_minutes", "calibration_minutes", "first minutes of calibration, in recording order"),
            )
        ):
            ax = axes[row, col]
            keyed: dict[str, list[dict]] = {}
            for r in rows:
                if r["setting"] == setting and r["subset"] == kind:
                    key = r["animal"] if setting == "within" else f"[{', '.join(r['train'])}] → {r['target']}"
                    keyed.setdefault(key, []).append(r)
            for key, rs in keyed.items():
                x = [r[xkey] for r in rs]
                acc = np.array([r["accuracy"] for r in rs])
                lo = acc - np.array([r["ci95"][0] for r in rs])
                hi = np.array([r["ci95"][1] for r in rs]) - acc
                ax.errorbar(x, acc, yerr=[lo, hi], marker="o", capsize=3, lw=1, ls="-" if row == 0 else "--", label=key)
            ax.axhline(0.5, color="k", lw=0.8, ls=":")
            if row == 0:
                ax.set_xscale("log", base=2)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("accuracy")
            ax.set_ylim(0.3, 1.0)
            ax.set_title(
                "within animals" if setting == "within" else "across animals (target's PS and baseline)", fontsize=9
            )
            if keyed:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_reliability(report: dict, path: Path) -> None:
    """Reliability diagrams: mean predicted p(natural) per bin against the observed share natural."""
    rel = report.get("reliability") or {}
    settings = list(rel)
    if not settings:
        return
    fig, axes = plt.subplots(1, len(settings), figsize=(4.5 * len(settings), 4), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":", label="perfectly calibrated")
        for model, r in rel[setting].items():
            pts = [(p, o) for p, o in zip(r["mean_predicted"], r["observed"], strict=True) if p is not None]
            if pts:
                ax.plot(
                    *zip(*pts, strict=True),
                    marker="o",
                    lw=1,
                    color=COLOURS.get(model),
                    label=f"{label(model)} (ECE {r['expected_calibration_error']:.2f})",
                )
        ax.set_xlabel("predicted p(natural)")
        ax.set_ylabel("observed share natural")
        ax.set_title(f"{setting} animals, pooled")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _where(r: dict) -> str:
    if r.get("setting") == "within" or ("animal" in r and "target" not in r):
        return str(r["animal"])
    return f"[{', '.join(r['train'])}] → {r['target']}"


def learning_curve_markdown(report: dict) -> list[str]:
    rows = report.get("learning_curve")
    if not rows:
        return []
    md = [
        "## How long to calibrate",
        "",
        f"{label(report['primary_network'])}: accuracy against the target animal's calibration trials, as random "
        "subsets and as the first minutes of calibration in recording order (how a lab calibrates). Within an "
        "animal they fit everything; across animals only the target's baseline and preferred stimuli (the "
        "classifier is trained on the others). A row that cannot be scored says why.",
        "",
        "![learning curve](learning_curve.png)",
        "",
        "| setting | animal / combination | subset | calibration trials (natural) | minutes | accuracy | image scale |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["accuracy"] is None:
            acc = f"not scored: {r['not_scored']}"
        else:
            acc = _fmt({"accuracy": r["accuracy"], "ci95": r["ci95"], "n_trials": r["n_test"]})
        scale = f"{r['image_scale']['ratio']:.2f}" if r.get("image_scale") else "-"
        md.append(
            f"| {r['setting']} | {_where(r)} | {r['subset']} | {r['calibration_trials']} ({r['calibration_natural']}) "
            f"| {r['calibration_minutes']:.2f} | {acc} | {scale} |"
        )
    return md + [""]


def _fmt(score: dict) -> str:
    lo, hi = score["ci95"]
    return f"{score['accuracy']:.1%} [{lo:.1%}, {hi:.1%}] (n={score['n_trials']})"


def _tally(tests: list[dict]) -> tuple[int, int, int]:
    """(a significantly better, b significantly better, no significant difference)."""
    a = sum(t["p_value"] < t["alpha"] and t["difference"] > 0 for t in tests)
    b = sum(t["p_value"] < t["alpha"] and t["difference"] < 0 for t in tests)
    return a, b, len(tests) - a - b


def reading(report: dict) -> list[str]:
    """A short, plain-language reading of the numbers. Every "A beats B" sentence rests on the exact
    McNemar tests in ``paired_tests`` (p < 0.05), never on intervals alone."""
    lines = []
    w = report["within_animal"]
    nets = report.get("linear_on_image", {}).get("networks", [report.get("primary_network", "googlenet")])
    primary = report.get("primary_network", nets[0])
    pnet = {n["model"]: n for n in report.get("networks", [])}
    desc = ", ".join(f"{label(k)} {np.mean([e['scores'][k]['accuracy'] for e in w]):.1%}" for k in nets)
    glm = np.mean([e["scores"]["glm"]["accuracy"] for e in w])
    lin = np.mean([e["scores"]["linear_image_pca"]["accuracy"] for e in w])
    lines.append(
        f"Within animals (mean accuracy): {desc}; linear read-out of the image (PCs) {lin:.1%}; GLM on R {glm:.1%} "
        f"(paper, real Allen data: {report['paper']['within_animal_mean']:.0%} and "
        f"{report['paper']['glm_baseline']:.0%})."
    )
    if report["across_animal"]:
        a = [e["scores"][primary]["accuracy"] for e in report["across_animal"]]
        lines.append(
            f"Across animals {label(primary)} ranges {min(a):.1%}–{max(a):.1%} (paper: "
            f"{report['paper']['across_worst']['accuracy']:.0%}–{report['paper']['across_best']['accuracy']:.0%})."
        )
    tests = report.get("paired_tests", [])
    for family, words in (
        ("network vs linear read-out", "a network against a linear read-out of the same images"),
        ("pretrained vs random-init", "a pretrained network against the same network from random initialisation"),
        ("network vs GLM", f"{label(primary)} against the GLM on R"),
    ):
        fam = [t for t in tests if t["family"] == family]
        if fam:
            better, worse, same = _tally(fam)
            lines.append(
                f"{words[0].upper() + words[1:]}: {better} significantly better, {worse} significantly worse, {same} "
                f"without a significant difference, of {len(fam)} comparisons (exact McNemar, p < 0.05)."
            )
    perm = report.get("permutation_test") or []
    if perm:
        n_sig = sum(p["p_value"] < 0.05 for p in perm)
        lines.append(
            f"Permutation test of the linear read-out ({perm[0]['permutations']} label permutations, the whole "
            f"cross-validation refit each time): above chance at p < 0.05 in {n_sig} of {len(perm)} animals and "
            f"combinations (largest p = {max(p['p_value'] for p in perm):.3f})."
        )
    ctrl = [
        e["scores"][m]
        for e in w + report["across_animal"]
        for m in ("shuffled_labels", "stimulus_only")
        if m in e["scores"]
    ]
    above = sum(c["p_vs_majority"] < 0.05 for c in ctrl if "p_vs_majority" in c)
    lines.append(
        f"The controls (shuffled labels, stimulus-only images) score {min(c['accuracy'] for c in ctrl):.1%}–"
        f"{max(c['accuracy'] for c in ctrl):.1%}; {above} of {len(ctrl)} are above the majority baseline at p < 0.05. "
        "Stimulus-only is at chance by construction when nothing leaks; under the paper's protocol it is not (below)."
    )
    if primary in pnet and not pnet[primary]["pretrained"] and primary == "googlenet":
        lines.append(
            "No GoogLeNet ImageNet weights were available: its features are its BatchNorm-calibrated random "
            "initialisation (read at inception3b) with a trained linear head."
        )
    pp = report.get("paper_protocol")
    if pp:
        rows = pp["within_animal"] + pp["across_animal"]
        infl = [e["inflation_pp"] for e in rows]
        self_term = [e["self_term_pp"] for e in rows]
        fam = [t for t in tests if t["family"] == "paper protocol vs ours"]
        sig = sum(t["p_value"] < 0.05 for t in fam)
        fam_self = [t for t in tests if t["family"] == "self-term leak vs ours"]
        sig_self = sum(t["p_value"] < 0.05 for t in fam_self)
        so = [e["stimulus_only_paper_protocol"]["accuracy"] for e in rows]
        lines.append(
            f"Under the paper's protocol (preferred stimuli and baseline fit on all trials) {label(primary)} scores "
            f"{min(infl):+.1f} to {max(infl):+.1f} points (mean {np.mean(infl):+.1f}) against ours on the same test "
            f"trials, significant in {sig} of {len(fam)}. The leak alone (each scored trial in its own PS and "
            f"baseline, nothing else changed) accounts for {min(self_term):+.1f} to {max(self_term):+.1f} points "
            f"(mean {np.mean(self_term):+.1f}; significant in {sig_self} of {len(fam_self)}); the rest is the "
            f"protocol's other differences. Its stimulus-only control scores {min(so):.1%}–{max(so):.1%}."
        )
    scale = report.get("image_scale") or []
    if scale:
        ratios = [r["ratio"] for r in scale]
        lines.append(
            f"Training and scored images are on one scale: std ratio {min(ratios):.2f}–{max(ratios):.2f} over "
            f"{len(ratios)} splits (preferred stimuli are means over their fit trials, training images leave-one-out)."
        )
    return lines


def paper_protocol_markdown(report: dict) -> list[str]:
    """The report's section setting the primary network leakage-free beside the paper's leaky protocol."""
    p = report.get("paper_protocol")
    if not p:
        return []

    def cells(e: dict) -> str:
        return (
            f"{_fmt(e['leakage_free'])} | {_fmt(e['self_term_only'])} | {_fmt(e['paper_protocol'])} | "
            f"{e['self_term_pp']:+.1f} | {e['rest_pp']:+.1f} | {e['inflation_pp']:+.1f} | "
            f"{_fmt(e['stimulus_only_paper_protocol'])}"
        )

    md = [
        "## The paper's protocol beside ours",
        "",
        f"{label(p['network'])}, the same folds and test trials. *Paper's protocol*: {p['protocol']} (a test trial's "
        f"own stimulus is in the preferred stimuli that form its image). *Self-term only*: {p['self_term_only']} -- "
        "the leak and nothing else, scored by our own trained classifier. Inflation (points) = leak + rest. The "
        "stimulus-only control under the paper's protocol forms images from shuffled responses: any accuracy above "
        "chance there is the leak.",
        "",
        "| animal / combination | leakage-free | self-term only | paper's protocol | leak (pp) | rest (pp) | "
        "inflation (pp) | stimulus-only, paper's protocol |",
        "|---|---|---|---|---|---|---|---|",
    ]
    md += [f"| {e['animal']} (within) | {cells(e)} |" for e in p["within_animal"]]
    md += [f"| [{', '.join(e['train'])}] → {e['target']} | {cells(e)} |" for e in p["across_animal"]]
    return md + [""]


def statistics_markdown(report: dict) -> list[str]:
    md = ["## Statistics", ""]
    scale = report.get("image_scale") or []
    if scale:
        md += [
            "**Image scale.** Std of the images each classifier trained on and of those it scored (ratio 1 = one "
            "scale).",
            "",
            "| where | split | training std | scored std | ratio |",
            "|---|---|---|---|---|",
        ]
        md += [
            f"| {_where(r)} | {r['split']} | {r['train_std']:.3g} | {r['scored_std']:.3g} | {r['ratio']:.2f} |"
            for r in scale
        ]
        md.append("")
    perm = report.get("permutation_test") or []
    if perm:
        md += [
            "**Permutation test** of the linear read-out on image PCs (labels permuted, whole cross-validation refit).",
            "",
            "| where | accuracy | permutations | null mean | null 95th percentile | p |",
            "|---|---|---|---|---|---|",
        ]
        md += [
            f"| {_where(p)} | {p['observed_accuracy']:.1%} | {p['permutations']} | {p['null_mean']:.1%} | "
            f"{p['null_95th_percentile']:.1%} | {p['p_value']:.4f} |"
            for p in perm
        ]
        md.append("")
    tests = report.get("paired_tests") or []
    if tests:
        md += [
            "**Paired tests** (exact McNemar on the same trials; every comparison the reading states).",
            "",
            "| comparison | where | A | B | A only right | B only right | p | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        md += [
            f"| {t['family']} | {_where(t)} | {label(t['a'])} {t['a_accuracy']:.1%} | {label(t['b'])} "
            f"{t['b_accuracy']:.1%} | {t['a_only_correct']} | {t['b_only_correct']} | {t['p_value']:.3g} | "
            f"{t['verdict']} |"
            for t in tests
        ]
        md.append("")
    md += [
        "**Balanced accuracy, per class and Brier score** of every model (majority baseline beside).",
        "",
        "| where | model | accuracy | balanced | artificial | natural | majority | Brier |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in report["within_animal"] + report["across_animal"]:
        for m, s in e["scores"].items():
            pc = s["per_class_accuracy"]
            md.append(
                f"| {_where(e)} | {label(m)} | {s['accuracy']:.1%} | {s['balanced_accuracy']:.1%} | "
                f"{pc['artificial']:.1%} | {pc['natural']:.1%} | {s['majority_baseline']:.1%} | {s['brier']:.3f} |"
            )
    md += ["", "![reliability](reliability.png)", ""] if report.get("reliability") else [""]
    return md


def write_report(report: dict, datasets: dict, out_dir: Path) -> Path:
    """Write report.json, the figures and report.md into ``out_dir``; returns report.md's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    within_objects = report.pop("_within_objects", [])
    figures = {}
    figure_within(report, out_dir / "within_animal.png")
    figures["within_animal"] = "within_animal.png"
    if report["across_animal"]:
        figure_across(report, out_dir / "across_animal.png")
        figures["across_animal"] = "across_animal.png"
    if within_objects and within_objects[0].example_split is not None:
        w0 = within_objects[0]
        figure_embedding(
            w0.example_split.test.images,
            w0.example_test_labels,
            w0.animal,
            out_dir / "neural_image_embedding.png",
            report["config"]["seed"],
        )
        figures["embedding"] = "neural_image_embedding.png"
        figure_examples(datasets[w0.animal], w0.example_split, out_dir / "examples.png")
        figures["examples"] = "examples.png"
    figure_curves(report, out_dir / "training_curves.png")
    figures["training_curves"] = "training_curves.png"
    if report.get("learning_curve"):
        figure_learning_curve(report, out_dir / "learning_curve.png")
        figures["learning_curve"] = "learning_curve.png"
    if report.get("reliability"):
        figure_reliability(report, out_dir / "reliability.png")
        figures["reliability"] = "reliability.png"
    report["figures"] = figures
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))

    nets = "; ".join(f"`{n['model']}`: {n['description']}" for n in report.get("networks", []))
    md = [
        "# rtdecode evaluation report",
        "",
        f"Networks: {nets}.  ",
        f"Executor: {report['executor']}.  Seed {report['config']['seed']}, "
        f"{report['config']['folds']}-fold within animals ({report['config']['split']} split), image size "
        f"{report['config']['image_size']}.",
        "",
        "## Reading",
        "",
        *[f"- {line}" for line in reading(report)],
        "",
        "## Within animals",
        "",
        "| animal | trials | units | " + " | ".join(label(m) for m in report["within_animal"][0]["scores"]) + " |",
        "|---" * (3 + len(report["within_animal"][0]["scores"])) + "|",
    ]
    units = {a["name"]: a for a in report["animals"]}
    for e in report["within_animal"]:
        a = units[e["animal"]]
        md.append(
            f"| {e['animal']} | {a['n_trials']} | {a['n_units']} | "
            + " | ".join(_fmt(s) for s in e["scores"].values())
            + " |"
        )
    md += ["", "![within](within_animal.png)", ""]
    if report["across_animal"]:
        md += [
            "## Across animals",
            "",
            "Target baseline and preferred stimuli fit on a calibration split of its "
            f"own trials ({report['config']['calibration_fraction']:.0%}, {report['config']['split']} split), "
            "scored on the rest.",
            "",
            "| train → target | " + " | ".join(label(m) for m in report["across_animal"][0]["scores"]) + " |",
            "|---" * (1 + len(report["across_animal"][0]["scores"])) + "|",
        ]
        for e in report["across_animal"]:
            md.append(
                f"| [{', '.join(e['train'])}] → {e['target']} | "
                + " | ".join(_fmt(s) for s in e["scores"].values())
                + " |"
            )
        md += ["", "![across](across_animal.png)", ""]
    for key, title in (
        ("embedding", "Neural images, PCA and t-SNE"),
        ("examples", "Preferred stimuli and neural images"),
        ("training_curves", "Training curves"),
    ):
        if key in figures:
            md += [f"## {title}", "", f"![{key}]({figures[key]})", ""]
    md += [
        "## Leakage",
        "",
        "Every fold's preferred stimuli and baseline statistics were fit on training trials only, and every "
        "training image with the preferred stimuli of the other training trials (leave one out); `report.json` "
        "lists, per fold, the trials each neural image was made from and the trials that fit its preferred "
        "stimuli and baseline (`within_animal[].folds`, `across_animal[].calibration_trials`). Every scored "
        "trial's prediction is in `report.json`'s `predictions`.",
        "",
    ]
    md += paper_protocol_markdown(report)
    md += statistics_markdown(report)
    md += learning_curve_markdown(report)
    path = out_dir / "report.md"
    path.write_text("\n".join(md))
    return path
