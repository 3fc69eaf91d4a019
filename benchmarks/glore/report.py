"""Tables of the GloRe benchmark (``benchmarks.glore.bench``): results.md (its plot,
val_vs_time.png, is drawn by ``videoglore.engine.plots.plot_val_vs_time``).

Input: the per-run records of ``glore.train_and_test`` (variant, seed, video_top1, per_relation,
train/test seconds, curve = [(seconds since start, val top-1) per epoch]).
"""

from __future__ import annotations

import dataclasses

import numpy as np

COLOURS = {"r50": "tab:blue", "r50_glore": "tab:red", "r50_wide": "tab:green"}


def summarize(setup, runs: list[dict], costs: dict, widths: dict) -> dict:
    """Per variant: mean ± std (sample std over seeds) of top-1, per relation, times, costs."""
    variants = {}
    for variant in setup.variants:
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        done = [r for r in mine if not r.get("diverged")]  # diverged runs have no test
        top1 = np.array([r["video_top1"] for r in done])
        relations = {
            rel: _mean_std([r["per_relation"].get(rel, np.nan) for r in done])
            for rel in setup.relations
        }
        variants[variant] = dict(
            runs=len(mine),
            diverged=len(mine) - len(done),
            top1_mean=float(top1.mean()) if done else None,
            top1_std=float(top1.std(ddof=1)) if len(done) > 1 else 0.0,
            per_relation=relations,
            # times of finished runs only: one stopped early would make the variant look cheap
            train_seconds_mean=_mean([r["train_seconds"] for r in done]),
            train_cpu_seconds_mean=_mean([r["train_cpu_seconds"] for r in done]),
            test_seconds_mean=_mean([r["test_seconds"] for r in done]),
            width=widths[variant],
            glore_usage={
                unit: float(np.mean([r["glore_usage"][unit] for r in done]))
                for unit in (done[0]["glore_usage"] if done else {})
            },
            **{k: costs[variant][k] for k in ("params_M", "gflops")},
        )
    return dict(setup=dataclasses.asdict(setup), variants=variants, runs=runs)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def _mean_std(values: list[float]) -> tuple[float, float]:
    v = np.array(values, dtype=np.float64)
    if not len(v):
        return float("nan"), float("nan")
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
        top1 = "—" if v["top1_mean"] is None else f"{v['top1_mean']:.1%} ± {v['top1_std']:.1%}"
        if v.get("diverged"):
            top1 += f" (diverged: {v['diverged']} of {v['runs']} runs)"
        lines.append(
            f"| {name} | {v['width']:.3g} | {top1} "
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
        cells = [
            "—" if np.isnan(m) else f"{m:.0%} ± {s:.0%}"
            for m, s in (v["per_relation"][r] for r in relations)
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, v in variants.items():
        if v.get("glore_usage"):
            units = ", ".join(f"{u} {w:.3f}" for u, w in v["glore_usage"].items())
            lines += ["", f"{name} unit use, mean |blocker BN weight| (0 at init): {units}"]
    return "\n".join(lines)
