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
    "linear_image": "linear on image",
    "linear_image_pca": "linear on image PCs",
    "glm": "GLM on R",
    "temporal": "temporal spike image",
    "shuffled_labels": "control: shuffled labels",
    "stimulus_only": "control: stimulus only",
}
COLOURS = {
    "googlenet": "#1f77b4",
    "linear_image": "#17becf",
    "linear_image_pca": "#9467bd",
    "glm": "#ff7f0e",
    "temporal": "#2ca02c",
    "shuffled_labels": "#7f7f7f",
    "stimulus_only": "#bcbd22",
}


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
            label=MODEL_LABELS.get(m, m),
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
    fig.suptitle("GoogLeNet training curves (within-animal folds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure_learning_curve(report: dict, path: Path) -> None:
    """Accuracy (with 95 % intervals) against the number of the target's calibration trials."""
    rows = report["learning_curve"]
    settings = [s for s in ("within", "across") if any(r["setting"] == s for r in rows)]
    fig, axes = plt.subplots(1, len(settings), figsize=(4.5 * len(settings), 3.5), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        keyed: dict[str, list[dict]] = {}
        for r in rows:
            if r["setting"] == setting:
                key = r["animal"] if setting == "within" else f"[{', '.join(r['train'])}] → {r['target']}"
                keyed.setdefault(key, []).append(r)
        for key, rs in keyed.items():
            n = [r["calibration_trials"] for r in rs]
            acc = np.array([r["accuracy"] for r in rs])
            lo = acc - np.array([r["ci95"][0] for r in rs])
            hi = np.array([r["ci95"][1] for r in rs]) - acc
            ax.errorbar(n, acc, yerr=[lo, hi], marker="o", capsize=3, lw=1, label=key)
        ax.axhline(0.5, color="k", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("calibration trials of the target")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0.3, 1.0)
        ax.set_title("within animals" if setting == "within" else "across animals (target's PS and baseline)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def learning_curve_markdown(report: dict) -> list[str]:
    rows = report.get("learning_curve")
    if not rows:
        return []
    md = [
        "## How long to calibrate",
        "",
        "GoogLeNet's accuracy against the number of the target animal's calibration trials (minutes of "
        "recording at the session's median trial period). Within an animal they fit everything; across "
        "animals only the target's baseline and preferred stimuli (the classifier is trained on the others).",
        "",
        "![learning curve](learning_curve.png)",
        "",
        "| setting | animal / combination | calibration trials | minutes | accuracy |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        where = r["animal"] if r["setting"] == "within" else f"[{', '.join(r['train'])}] → {r['target']}"
        score = {"accuracy": r["accuracy"], "ci95": r["ci95"], "n_trials": r["n_test"]}
        md.append(
            f"| {r['setting']} | {where} | {r['calibration_trials']} | {r['calibration_minutes']:.1f} | {_fmt(score)} |"
        )
    return md + [""]


def _fmt(score: dict) -> str:
    lo, hi = score["ci95"]
    return f"{score['accuracy']:.1%} [{lo:.1%}, {hi:.1%}] (n={score['n_trials']})"


def reading(report: dict) -> list[str]:
    """A short, plain-language reading of the numbers (no claims the numbers do not support)."""
    lines = []
    w = report["within_animal"]
    g = np.mean([e["scores"]["googlenet"]["accuracy"] for e in w])
    glm = np.mean([e["scores"]["glm"]["accuracy"] for e in w])
    ctrl = [e["scores"][m]["accuracy"] for e in w for m in ("shuffled_labels", "stimulus_only")]
    ctrl += [e["scores"][m]["accuracy"] for e in report["across_animal"] for m in ("shuffled_labels", "stimulus_only")]
    lines.append(
        f"Within animals GoogLeNet on neural images averages {g:.1%}, the GLM on R {glm:.1%} "
        f"(paper, real Allen data: {report['paper']['within_animal_mean']:.0%} and "
        f"{report['paper']['glm_baseline']:.0%})."
    )
    if report["across_animal"]:
        a = [e["scores"]["googlenet"]["accuracy"] for e in report["across_animal"]]
        lines.append(
            f"Across animals GoogLeNet ranges {min(a):.1%}–{max(a):.1%} (paper: "
            f"{report['paper']['across_worst']['accuracy']:.0%}–{report['paper']['across_best']['accuracy']:.0%})."
        )
    lines.append(
        f"The controls (shuffled labels, stimulus-only images) range {min(ctrl):.1%}–{max(ctrl):.1%}; "
        "near 50 % means the accuracy above comes from neural activity, not from stimuli leaking through "
        "the preferred stimuli."
    )
    if not report["pretrained_weights"]:
        lines.append(
            "No ImageNet weights were available: GoogLeNet's features are its BatchNorm-calibrated random "
            "initialisation (read at inception3b) with a trained linear head. With the paper's pretrained "
            "features and Allen-size sessions (~12,000 trials) expect more."
        )
    lin = report.get("linear_on_image")
    if lin:
        margins = [e["googlenet_minus_best_linear"] for e in lin["within_animal"] + lin["across_animal"]]
        behind = sum(m < 0 for m in margins)
        lines.append(
            f"GoogLeNet against the best linear read-out of the same neural images (pixels or {lin['pcs']} "
            f"principal components): margin {min(margins):+.1%} to {max(margins):+.1%}; the network is behind "
            f"in {behind} of {len(margins)} comparisons"
            + (
                " -- here a linear read-out of the image does at least as well as the network."
                if behind * 2 >= len(margins)
                else "."
            )
        )
    pp = report.get("paper_protocol")
    if pp:
        infl = [e["inflation_pp"] for e in pp["within_animal"] + pp["across_animal"]]
        lines.append(
            f"Under the paper's protocol (preferred stimuli and baseline fit on all trials, test trials "
            f"included) the same GoogLeNet scores {min(infl):+.1f} to {max(infl):+.1f} percentage points "
            f"(mean {np.mean(infl):+.1f}) against the leakage-free numbers on the same test trials. A positive "
            "difference is accuracy the leak adds, not decoding; differences within the 95 % intervals are noise."
        )
    if g < glm - 0.05:
        lines.append(
            "Here the GLM on R beats the network on neural images: the images carry the information (they are "
            "a linear map of R), but with few trials per animal and no pretrained features the network does "
            "not extract all of it."
        )
    return lines


def paper_protocol_markdown(report: dict) -> list[str]:
    """The report's section setting GoogLeNet leakage-free beside the paper's leaky protocol."""
    p = report.get("paper_protocol")
    if not p:
        return []

    def cells(e: dict) -> str:
        return f"{_fmt(e['leakage_free'])} | {_fmt(e['paper_protocol'])} | {e['inflation_pp']:+.1f}"

    md = [
        "## The paper's protocol beside ours",
        "",
        f"The same GoogLeNet, folds and test trials, with {p['protocol']} (the seed paper's protocol: "
        "a test trial's own stimulus is in the preferred stimuli that form its image). Inflation is the "
        "difference in percentage points.",
        "",
        "| animal / combination | leakage-free | paper's protocol | inflation (pp) |",
        "|---|---|---|---|",
    ]
    md += [f"| {e['animal']} (within) | {cells(e)} |" for e in p["within_animal"]]
    md += [f"| [{', '.join(e['train'])}] → {e['target']} | {cells(e)} |" for e in p["across_animal"]]
    return md + [""]


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
    report["figures"] = figures
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))

    md = [
        "# rtdecode evaluation report",
        "",
        f"Classifier: {report['classifier']}.  ",
        f"Executor: {report['executor']}.  Seed {report['config']['seed']}, "
        f"{report['config']['folds']}-fold within animals, image size {report['config']['image_size']}.",
        "",
        "## Reading",
        "",
        *[f"- {line}" for line in reading(report)],
        "",
        "## Within animals",
        "",
        "| animal | trials | units | "
        + " | ".join(MODEL_LABELS[m] for m in report["within_animal"][0]["scores"])
        + " |",
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
            f"own trials ({report['config']['calibration_fraction']:.0%}), scored on the rest.",
            "",
            "| train → target | " + " | ".join(MODEL_LABELS[m] for m in report["across_animal"][0]["scores"]) + " |",
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
        "Every fold's preferred stimuli and baseline statistics were fit on training trials only; "
        "`report.json` lists, per fold, the trials each neural image was made from and the trials that fit its "
        "preferred stimuli and baseline (`within_animal[].folds`, `across_animal[].calibration_trials`).",
        "",
    ]
    md += paper_protocol_markdown(report)
    md += learning_curve_markdown(report)
    path = out_dir / "report.md"
    path.write_text("\n".join(md))
    return path
