"""Tables and plot of the GloRe benchmark (``benchmarks.glore.bench``): results.md, val_vs_time.png.

Input: the per-run records of ``glore.train_and_test`` (variant, seed, video_top1, per_relation,
train/test seconds, curve = [(seconds since start, val top-1) per epoch]).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

COLOURS = {"r50": "tab:blue", "r50_glore": "tab:red", "r50_wide": "tab:green"}


def summarize(setup, runs: list[dict], costs: dict, widths: dict) -> dict:
    """Per variant: mean ± std (sample std over seeds) of top-1, per relation, times, costs."""
    variants = {}
    for variant in setup.variants:
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        top1 = np.array([r["video_top1"] for r in mine])
        relations = {
            rel: _mean_std([r["per_relation"].get(rel, np.nan) for r in mine])
            for rel in setup.relations
        }
        variants[variant] = dict(
            runs=len(mine),
            top1_mean=float(top1.mean()),
            top1_std=float(top1.std(ddof=1)) if len(top1) > 1 else 0.0,
            per_relation=relations,
            train_seconds_mean=float(np.mean([r["train_seconds"] for r in mine])),
            train_cpu_seconds_mean=float(np.mean([r["train_cpu_seconds"] for r in mine])),
            test_seconds_mean=float(np.mean([r["test_seconds"] for r in mine])),
            width=widths[variant],
            glore_usage={
                unit: float(np.mean([r["glore_usage"][unit] for r in mine]))
                for unit in mine[0]["glore_usage"]
            },
            **{k: costs[variant][k] for k in ("params_M", "gflops")},
        )
    return dict(setup=dataclasses.asdict(setup), variants=variants, runs=runs)


def _mean_std(values: list[float]) -> tuple[float, float]:
    v = np.array(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def format_results(report: dict) -> str:
    """Markdown: the main table and the per-relation table."""
    setup, variants = report["setup"], report["variants"]
    relations = setup["relations"]
    chance = 1 / (2 * len(relations))
    lines = [
        f"{setup['seeds']} seed(s) × {setup['epochs']} epochs; "
        f"{2 * len(relations)} classes, {setup['videos_per_class']} train / "
        f"{setup['val_videos_per_class']} test videos per class, "
        f"{setup['num_frames']}×{setup['size']}² videos (clip {setup['num_frames'] // 2}×"
        f"{setup['size']}² every 2nd frame); chance {chance:.1%}.",
        "",
        "| variant | width | video top-1 (mean ± std) | params (M) | GFLOPs | train s/run "
        "(wall) | train CPU s/run | test s/run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, v in variants.items():
        lines.append(
            f"| {name} | {v['width']:.3g} | {v['top1_mean']:.1%} ± {v['top1_std']:.1%} "
            f"| {v['params_M']:.3f} | {v['gflops']:.4f} | {v['train_seconds_mean']:.0f} "
            f"| {v['train_cpu_seconds_mean']:.0f} | {v['test_seconds_mean']:.1f} |"
        )
    lines += [
        "",
        "Top-1 per relation (8-way prediction correct, videos of that relation; mean ± std):",
        "",
        "| variant | " + " | ".join(relations) + " |",
        "|---|" + "---:|" * len(relations),
    ]
    for name, v in variants.items():
        cells = [f"{m:.0%} ± {s:.0%}" for m, s in (v["per_relation"][r] for r in relations)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, v in variants.items():
        if v.get("glore_usage"):
            units = ", ".join(f"{u} {w:.3f}" for u, w in v["glore_usage"].items())
            lines += ["", f"{name} unit use, mean |blocker BN weight| (0 at init): {units}"]
    return "\n".join(lines)


def plot_val_vs_time(runs: list[dict], path: Path, num_classes: int = 0) -> Path:
    """Validation top-1 (single centre clip) against training wall time, one colour per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = COLOURS
    for variant in dict.fromkeys(r["variant"] for r in runs):
        curves = [r["curve"] for r in runs if r["variant"] == variant and r["curve"]]
        for i, curve in enumerate(curves):
            t, acc = zip(*curve, strict=True)
            ax.plot(t, acc, "-", color=colours.get(variant), alpha=0.35, lw=1)
            if i == 0:
                ax.plot([], [], color=colours.get(variant), label=variant)
        epochs = min(len(c) for c in curves) if curves else 0
        if epochs:
            t = np.mean([[p[0] for p in c[:epochs]] for c in curves], axis=0)
            acc = np.mean([[p[1] for p in c[:epochs]] for c in curves], axis=0)
            ax.plot(t, acc, "o-", color=colours.get(variant), lw=2, ms=3)
    if num_classes:  # chance, and "knows the relation, guesses which of its 2 classes" = 1/2
        ax.axhline(1 / num_classes, color="grey", ls=":", lw=1, label="chance")
        ax.axhline(0.5, color="grey", ls="--", lw=1, label="relation type only")
    ax.set(
        xlabel="training wall time (s, 1 thread, shared CPU)",
        ylabel="val top-1 (1 clip)",
        ylim=(0, 1),
        title="Does GloRe help? validation accuracy vs training time",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
