"""Every plot the project draws, each written atomically as a PNG.

plot_curves(run_dir)            log.jsonl ─▶ curves.png (loss, accuracy, learning rate)
plot_confusions(matrix, ...)    test confusion matrix ─▶ confusion.png (top confused pairs)
plot_val_vs_time(runs, ...)     benchmark runs ─▶ val_vs_time.png (val top-1 vs train time)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_prep.files import atomic_open
from videoglore.engine.metrics import top_confused_pairs
from videoglore.engine.run_log import read_log


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int) -> Path:
    plt = _pyplot()
    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return path


def plot_curves(run_dir: str | Path) -> Path:
    """Draw loss, accuracy and learning rate from ``log.jsonl`` into ``curves.png``."""
    plt = _pyplot()
    run_dir = Path(run_dir)
    # A resumed run repeats the steps done after its checkpoint: the later record wins.
    latest = {(r["kind"], r["step"]): r for r in read_log(run_dir / "log.jsonl")}
    steps = [r for (kind, _), r in sorted(latest.items()) if kind == "train_step"]
    epochs = [r for (kind, _), r in sorted(latest.items()) if kind == "epoch"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    axes[0].plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.8, label="step")
    axes[0].plot(
        [r["step"] for r in epochs], [r["train_loss"] for r in epochs], "o-", label="epoch"
    )
    axes[0].set(title="training loss", xlabel="iteration")
    axes[0].legend()
    axes[1].plot(
        [r["epoch"] for r in epochs], [r["train_top1"] for r in epochs], "o-", label="train"
    )
    val = [r for r in epochs if "val_top1" in r]
    axes[1].plot(
        [r["epoch"] for r in val], [r["val_top1"] for r in val], "o-", label="val (1 clip)"
    )
    axes[1].set(title="top-1 accuracy", xlabel="epoch", ylim=(0, 1))
    axes[1].legend()
    axes[2].plot([r["step"] for r in steps], [r["lr"] for r in steps])
    axes[2].set(title="learning rate", xlabel="iteration")
    fig.tight_layout()
    return _save(fig, run_dir / "curves.png", dpi=80)


def plot_confusions(matrix: np.ndarray, classes: list[str], path: Path, n: int = 20) -> Path:
    """Horizontal bars of the ``n`` most frequent (true → predicted) mistakes; readable for 400
    classes where a full matrix is not."""
    plt = _pyplot()
    pairs = top_confused_pairs(matrix, n)
    fig, ax = plt.subplots(figsize=(9, 0.35 * max(len(pairs), 3) + 1.2))
    if pairs:
        names = [f"{classes[t]} → {classes[p]}" for t, p, _ in reversed(pairs)]
        ax.barh(names, [c for _, _, c in reversed(pairs)], color="tab:red")
        ax.set_xlabel("videos")
    else:
        ax.text(0.5, 0.5, "no confusions", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title(f"most confused class pairs, true → predicted ({len(pairs)} shown)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return _save(fig, path, dpi=90)


def plot_val_vs_time(
    runs: list[dict],
    path: Path,
    *,
    colours: dict[str, str] | None = None,
    lines: dict[str, float] | None = None,
    title: str = "validation accuracy vs training time",
    xlabel: str = "training wall time (s)",
) -> Path:
    """Validation top-1 (single centre clip) against training wall time, one colour per variant.

    ``runs``: records with ``variant`` and ``curve`` = [(seconds since start, val top-1), ...];
    thin lines per run, a thick line for the mean over the runs of a variant. ``lines``: label →
    top-1 of dotted horizontal reference lines (e.g. chance).
    """
    plt = _pyplot()
    colours = colours or {}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant in dict.fromkeys(r["variant"] for r in runs):
        colour = colours.get(variant)
        curves = [r["curve"] for r in runs if r["variant"] == variant and r["curve"]]
        for i, curve in enumerate(curves):
            t, acc = zip(*curve, strict=True)
            ax.plot(t, acc, "-", color=colour, alpha=0.35, lw=1)
            if i == 0:
                ax.plot([], [], color=colour, label=variant)
        epochs = min(len(c) for c in curves) if curves else 0
        if epochs:
            t = np.mean([[p[0] for p in c[:epochs]] for c in curves], axis=0)
            acc = np.mean([[p[1] for p in c[:epochs]] for c in curves], axis=0)
            ax.plot(t, acc, "o-", color=colour, lw=2, ms=3)
    for (label, value), style in zip((lines or {}).items(), (":", "--", "-."), strict=False):
        ax.axhline(value, color="grey", ls=style, lw=1, label=label)
    ax.set(xlabel=xlabel, ylabel="val top-1 (1 clip)", ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path, dpi=90)
