"""Parameter and FLOP counts of every model at its standard clip (fvcore).

fvcore's ``FlopCountAnalysis`` counts one fused multiply-add as one flop, so "GFLOPs" here are
GMACs, the convention of the GloRe and MF-Net papers. Counts are for one clip (batch 1) at the
model's ``default_clip`` and include convolutions, matrix products (the GloRe projections),
BatchNorm and the classifier; element-wise ops (ReLU, additions, pooling) are not counted.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

from videoglore.models.registry import MODELS

log = logging.getLogger(__name__)


def count_model(name: str, **kwargs) -> dict:
    """Parameters (M) and GFLOPs of one model at its default clip."""
    model = MODELS[name](**kwargs).eval()
    t, h, w = model.default_clip
    flops = module_flops(model, torch.zeros(1, 3, t, h, w))[""]
    params = sum(p.numel() for p in model.parameters())
    return {
        "model": name,
        "clip": f"{t}x{h}x{w}",
        "params_M": params / 1e6,
        "gflops": flops / 1e9,
    }


def module_flops(model: nn.Module, clip: torch.Tensor) -> dict[str, int]:
    """fvcore counts (MACs) of one forward on ``clip``, per module name; ``""`` is the whole model.

    Each module's count includes its children (fvcore ``by_module``). The model is traced in eval
    mode (BatchNorm statistics untouched) and put back in the mode it was in.
    """
    with warnings.catch_warnings():  # fvcore's import uses the deprecated torch.jit.script
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, clip)
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            return dict(analysis.by_module())
    finally:
        model.train(was_training)


def flops_table(names: list[str] | None = None, **kwargs) -> list[dict]:
    """One row per model: model, clip (T×H×W), params_M, gflops and glore_overhead_pct.

    ``glore_overhead_pct`` is the extra GFLOPs of a ``*_glore`` model over the same model without
    GloRe, in percent (None for the plain models). ``kwargs`` go to every constructor (e.g.
    ``width=0.125`` for quick checks).
    """
    names = list(MODELS) if names is None else list(names)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise KeyError(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    cache: dict[str, dict] = {}

    def row(name: str) -> dict:
        if name not in cache:
            log.info("counting %s", name)
            cache[name] = count_model(name, **kwargs)
        return cache[name]

    rows = []
    for name in names:
        r = dict(row(name))
        base = name.removesuffix("_glore")
        if base != name:
            r["glore_overhead_pct"] = 100.0 * (r["gflops"] / row(base)["gflops"] - 1.0)
        else:
            r["glore_overhead_pct"] = None
        rows.append(r)
    return rows


def format_flops_table(rows: list[dict]) -> str:
    """A markdown table of ``flops_table`` rows."""
    lines = [
        "| model | clip (T×H×W) | params (M) | GFLOPs (MACs) | GloRe overhead |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        pct = r.get("glore_overhead_pct")
        overhead = "—" if pct is None else f"+{pct:.1f}%"
        lines.append(
            f"| {r['model']} | {r['clip']} | {r['params_M']:.2f} | {r['gflops']:.2f} | {overhead} |"
        )
    return "\n".join(lines)
